"""What a component sees of the world: its role, its arguments and files, and the other parties.

A component is written once against :class:`Context`; the :class:`Federation` underneath is an
in-memory hub in tests and the task_engine's worker socket in production.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from fedalgo.errors import ArgumentError
from fedalgo.tables import LABEL_COLUMN, Dataset, Table
from fedcore import codec
from fedcore.floors import NO_FLOORS, SecurityFloors
from fedcore.params import InvalidArguments, Params

if TYPE_CHECKING:
    from fedalgo.computing import Computing

P = TypeVar("P", bound=Params)
MetricCallback = Callable[[str, Any, "int | None"], None]


class Federation(Protocol):
    """Point-to-point, tagged, ordered messaging between the parties of one step.

    Values must be encodable by :mod:`fedcore.codec`; ``recv`` blocks until the next value with
    that tag from that party arrives (messages with the same tag are delivered in send order).
    A federation may deliver long arrays of big integers still encoded (``codec.unpackb(...,
    int_arrays=True)``): :meth:`Context.recv` decodes them unless the component asks not to.
    """

    def send(self, dst_party: str, tag: str, value: Any) -> None: ...

    def recv(self, src_party: str, tag: str) -> Any: ...


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
        computing: Computing | None = None,
        floors: SecurityFloors = NO_FLOORS,
    ) -> None:
        self.role = role
        self.party_id = str(party_id)
        self.parties: dict[str, list[str]] = {r: [str(p) for p in ps] for r, ps in parties.items()}
        self.args: dict[str, Any] = dict(args)
        # A URI (hdfs://, s3a://, file://) stays a string: Path would fold its "//".
        self._locations: dict[str, str] = {k: str(v) for k, v in inputs.items()}
        self.inputs: dict[str, Path] = {k: Path(v) for k, v in inputs.items()}
        self.outputs: dict[str, Path] = {k: Path(v) for k, v in outputs.items()}
        self.federation = federation
        self.floors = floors
        self._on_metric = on_metric
        self.logger = logger or logging.getLogger(f"fedalgo.{role}.{self.party_id}")
        self._computing = computing
        self._owns_computing = False
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

    def recv(self, frm: str, tag: str, *, int_arrays: bool = False) -> Any:
        """Receive from a party id, or from the single party playing role ``frm``.

        Long arrays of big integers come as lists of ints, or with ``int_arrays`` as the
        federation delivered them: possibly still encoded (:class:`fedcore.codec.IntArray`),
        for a component that hands them to its engine without building them here.
        """
        if frm in self.parties:
            ids = [p for p in self.parties[frm] if p != self.party_id]
            if len(ids) != 1:
                raise ValueError(f"role {frm!r} has {len(ids)} other parties; use recv_all")
            value = self.federation.recv(ids[0], tag)
        elif frm in self._role_of:
            value = self.federation.recv(frm, tag)
        else:
            raise ValueError(
                f"{frm!r} is neither a role nor a party id of this job ({self.parties})"
            )
        return value if int_arrays else codec.materialise(value)

    def recv_all(self, role: str, tag: str, *, int_arrays: bool = False) -> dict[str, Any]:
        """Receive ``tag`` from every party playing ``role``, in the order they are listed
        (``int_arrays`` as for :meth:`recv`)."""
        values = {pid: self.federation.recv(pid, tag) for pid in self._targets(role)}
        if int_arrays:
            return values
        return {pid: codec.materialise(value) for pid, value in values.items()}

    # -- arguments and files -----------------------------------------------------------------

    def params(self, model: type[P]) -> P:
        """This step's arguments read through its component's parameter declaration.

        :class:`ArgumentError` names each key that is of the wrong type or out of bounds.
        """
        try:
            return model.from_args(self.args)
        except InvalidArguments as exc:
            raise ArgumentError(f"invalid arguments: {exc}") from None

    def input(self, name: str) -> Path:
        """The path of input ``name``, which must exist."""
        if name not in self.inputs:
            raise ArgumentError(f"input {name!r} was not given (have {sorted(self.inputs)})")
        path = self.inputs[name]
        if not path.is_file():
            raise ArgumentError(f"input {name!r}: no file at {path}")
        return path

    def read_table(self, name: str) -> Table:
        """Input ``name`` as a table, read by the computing engine (Spark reads URIs)."""
        location = self._locations.get(name, "")
        if "://" in location:
            return self.computing.read_table(location)
        return self.computing.read_table(str(self.input(name)))

    def read_dataset(self, name: str, *, with_label: bool) -> Dataset:
        """Input ``name`` as numeric data (:func:`fedalgo.tables.read_dataset`), parsed by the
        computing engine (on Spark, in the executors: the step gets numbers, not text)."""
        location = self._locations.get(name, "")
        if "://" not in location:
            location = str(self.input(name))
        data = self.computing.read_dataset(location, with_label=with_label)
        if data.has_label_column and not with_label:
            self.logger.warning(
                "ignoring the label column %r in the %s's data", LABEL_COLUMN, self.role
            )
        return data

    def input_location(self, name: str) -> str:
        """Input ``name`` as given (a path or a URI), for messages."""
        return self._locations.get(name, name)

    # -- computing ----------------------------------------------------------------------------

    @property
    def computing(self) -> Computing:
        """Where this run's data-parallel work goes; the local process pool unless the step
        was given an engine (:mod:`fedalgo.computing`). Workers start on first use."""
        if self._computing is None:
            from fedalgo.computing import LocalComputing  # here: fedalgo.computing imports paillier

            self._computing = LocalComputing()
            self._owns_computing = True
        return self._computing

    def close(self) -> None:
        """Release the computing engine if this context started it (the caller owns a given one)."""
        if self._owns_computing and self._computing is not None:
            self._computing.close()
            self._computing = None
            self._owns_computing = False

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
