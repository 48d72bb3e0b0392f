"""The exceptions fedalgo raises, so callers can tell bad input from a broken federation.

``FedAlgoError`` is the root. ``ArgumentError`` and ``DataError`` are also ``ValueError`` (the
caller gave something unusable); ``UnknownComponentError`` is also a ``KeyError``;
``FederationError`` covers a peer that never answered or a run that was aborted. A step refused by
its party's security floors raises ``fedcore.floors.FloorRefusal``. :func:`failure_code` names
each of them by the error code the other parties are told (``fedcore.failures``).
"""

from __future__ import annotations

from fedcore import failures
from fedcore.floors import FloorRefusal


class FedAlgoError(Exception):
    """Base class of every error fedalgo raises on purpose."""


class ArgumentError(FedAlgoError, ValueError):
    """A component argument is missing, of the wrong type or out of range."""


class DataError(FedAlgoError, ValueError):
    """An input data set cannot be used: missing columns, bad values, misaligned rows."""


class ProtocolError(FedAlgoError):
    """A peer sent something the protocol does not allow (wrong shape, range or type)."""


class UnknownComponentError(FedAlgoError, KeyError):
    """No component is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError's str() would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class FederationError(FedAlgoError):
    """Talking to another party failed."""


class FederationTimeout(FederationError, TimeoutError):
    """A message did not arrive in time."""


class FederationAborted(FederationError):
    """The run was aborted (another party failed) while this party was waiting."""


def failure_code(exc: BaseException) -> str:
    """The code under which a step's failure with ``exc`` is reported to the other parties."""
    if isinstance(exc, FloorRefusal):
        return failures.floor_code(exc.floor)
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return failures.STEP_ERROR


# in order: the first match wins (ArgumentError and DataError are ValueErrors too)
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (ArgumentError, failures.BAD_ARGUMENTS),
    (DataError, failures.BAD_DATA),
    (ProtocolError, failures.PEER_PROTOCOL),
    (FederationError, failures.FEDERATION),
    (MemoryError, failures.OUT_OF_MEMORY),
    (OSError, failures.INPUT_UNREADABLE),
)
