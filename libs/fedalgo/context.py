"""What a component sees of the world: its role, its arguments and files, and the other parties.

A component is written once against :class:`Context`; the :class:`Federation` underneath is an
in-memory hub in tests and the task_engine's worker socket in production.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar, cast, overload

import numpy as np

from fedalgo.errors import ArgumentError
from fedcore.floors import NO_FLOORS, SecurityFloors

T = TypeVar("T")
MetricCallback = Callable[[str, Any, "int | None"], None]


class Federation(Protocol):
    """Point-to-point, tagged, ordered messaging between the parties of one step.

    Values must be encodable by :mod:`fedcore.codec`; ``recv`` blocks until the next value with
    that tag from that party arrives (messages with the same tag are delivered in send order).
    """

    def send(self, dst_party: str, tag: str, value: Any) -> None: ...

    def recv(self, src_party: str, tag: str) -> Any: ...


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _to_bool(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    return None


def _to_int(raw: Any) -> int | None:
    if isinstance(raw, bool):  # bool is an int subclass, but "max-iter: true" is a mistake
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            return None
    return None


def _to_float(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _to_str(raw: Any) -> str | None:
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    return str(raw)


_CONVERTERS: Final[dict[type, Callable[[Any], Any]]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
}


def _convert(name: str, raw: Any, kind: type[T]) -> T:
    """Coerce a job argument (a YAML scalar, or a string from a form) to ``kind``."""
    if kind not in _CONVERTERS:
        raise TypeError(f"unsupported argument type {kind.__name__}")
    value = _CONVERTERS[kind](raw)
    if value is None:
        raise ArgumentError(f"argument {name!r} must be {kind.__name__}, got {raw!r}")
    return cast(T, value)


def _plain(value: Any) -> Any:
    """Metrics leave as plain JSON-able data: numpy scalars and arrays become floats and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class Context:
    """One party's view of one component run.

    ``parties`` maps each role to its party ids, e.g. ``{"guest": ["10000"], "host": ["20000"]}``.
    ``inputs`` and ``outputs`` map names to file paths; outputs are files the component writes.
    ``floors`` are this party's security floors, from its own settings (never from a peer): the
    task_engine always passes them; a run outside a party (tests) has none unless given.
    """

    def __init__(
        self,
        *,
        role: str,
        party_id: str,
        parties: Mapping[str, Sequence[str]],
        args: Mapping[str, Any],
        inputs: Mapping[str, str | Path],
        outputs: Mapping[str, str | Path],
        federation: Federation,
        on_metric: MetricCallback | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        floors: SecurityFloors = NO_FLOORS,
    ) -> None:
        self.role = role
        self.party_id = str(party_id)
        self.parties: dict[str, list[str]] = {r: [str(p) for p in ps] for r, ps in parties.items()}
        self.args: dict[str, Any] = dict(args)
        self.inputs: dict[str, Path] = {k: Path(v) for k, v in inputs.items()}
        self.outputs: dict[str, Path] = {k: Path(v) for k, v in outputs.items()}
        self.federation = federation
        self.floors = floors
        self._on_metric = on_metric
        self.logger = logger or logging.getLogger(f"fedalgo.{role}.{self.party_id}")
        self._role_of: dict[str, str] = {}
        for r, ids in self.parties.items():
            for pid in ids:
                if pid in self._role_of:
                    raise ValueError(f"party {pid} has two roles: {self._role_of[pid]} and {r}")
                self._role_of[pid] = r
        if self._role_of.get(self.party_id) != role:
            raise ValueError(f"party {self.party_id} is not listed as a {role} in {self.parties}")

    # -- parties ------------------------------------------------------------------------------

    def party_ids(self, role: str) -> list[str]:
        """The ids of the parties playing ``role`` (empty if none)."""
        return list(self.parties.get(role, []))

    def _targets(self, to: str) -> list[str]:
        if to in self.parties:
            return [p for p in self.parties[to] if p != self.party_id]
        if to in self._role_of:
            return [to]
        raise ValueError(f"{to!r} is neither a role nor a party id of this job ({self.parties})")

    def send(self, to: str, tag: str, value: Any) -> None:
        """Send ``value`` to a party id, or to every party (but this one) playing role ``to``."""
        for dst in self._targets(to):
            self.federation.send(dst, tag, value)

    def recv(self, frm: str, tag: str) -> Any:
        """Receive from a party id, or from the single party playing role ``frm``."""
        if frm in self.parties:
            ids = [p for p in self.parties[frm] if p != self.party_id]
            if len(ids) != 1:
                raise ValueError(f"role {frm!r} has {len(ids)} other parties; use recv_all")
            return self.federation.recv(ids[0], tag)
        if frm in self._role_of:
            return self.federation.recv(frm, tag)
        raise ValueError(f"{frm!r} is neither a role nor a party id of this job ({self.parties})")

    def recv_all(self, role: str, tag: str) -> dict[str, Any]:
        """Receive ``tag`` from every party playing ``role``, in the order they are listed."""
        return {pid: self.federation.recv(pid, tag) for pid in self._targets(role)}

    # -- arguments and files -----------------------------------------------------------------

    @overload
    def arg(self, name: str, kind: type[T]) -> T: ...

    @overload
    def arg(self, name: str, kind: type[T], default: None) -> T | None: ...

    @overload
    def arg(self, name: str, kind: type[T], default: T) -> T: ...

    def arg(self, name: str, kind: type[T], default: Any = REQUIRED) -> Any:
        """The argument ``name`` (hyphenated, as in pipeline YAML) converted to ``kind``.

        ``max_iter`` is accepted for ``max-iter``; a missing argument without a default, or one
        that cannot be converted, raises :class:`ArgumentError` naming it.
        """
        for key in (name, name.replace("-", "_")):
            if key in self.args and self.args[key] is not None:
                return _convert(name, self.args[key], kind)
        if default is REQUIRED:
            raise ArgumentError(f"argument {name!r} is required")
        return default

    def choice(self, name: str, choices: Sequence[str], default: str) -> str:
        """A string argument restricted to ``choices``."""
        value = self.arg(name, str, default)
        if value not in choices:
            raise ArgumentError(f"argument {name!r} must be one of {list(choices)}, got {value!r}")
        return value

    def input(self, name: str) -> Path:
        """The path of input ``name``, which must exist."""
        if name not in self.inputs:
            raise ArgumentError(f"input {name!r} was not given (have {sorted(self.inputs)})")
        path = self.inputs[name]
        if not path.is_file():
            raise ArgumentError(f"input {name!r}: no file at {path}")
        return path

    def output(self, name: str) -> Path:
        """The path to write output ``name`` to (its directory is created)."""
        if name not in self.outputs:
            raise ArgumentError(f"output {name!r} has no path (have {sorted(self.outputs)})")
        path = self.outputs[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # -- reporting ----------------------------------------------------------------------------

    def metric(self, name: str, value: Any, step: int | None = None) -> None:
        """Report a metric: a number, or a JSON-able structure such as a curve."""
        plain = _plain(value)
        if isinstance(plain, float | int) and not isinstance(plain, bool):
            self.logger.info(
                "metric %s = %.6g%s", name, plain, "" if step is None else f" @ {step}"
            )
        if self._on_metric is not None:
            self._on_metric(name, plain, step)
