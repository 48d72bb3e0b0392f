"""The exceptions fedalgo raises, so callers can tell bad input from a broken federation.

``FedAlgoError`` is the root. ``ArgumentError`` and ``DataError`` are also ``ValueError`` (the
caller gave something unusable); ``UnknownComponentError`` is also a ``KeyError``;
``FederationError`` covers a peer that never answered or a run that was aborted.
"""

from __future__ import annotations


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
