"""An in-memory federation (one thread per party) and ``run_parties``, for tests and benchmarks.

Every value is round-tripped through :mod:`fedcore.codec` exactly as on the wire, so a component
that sends something a real deployment could not carry fails here first. The hub counts the bytes
each party sends and can record every message, which the privacy tests inspect.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fedalgo.components import get_component
from fedalgo.context import Context
from fedalgo.errors import FederationAborted, FederationTimeout
from fedcore import codec
from fedcore.floors import NO_FLOORS

_POLL_S = 0.05


class Message(NamedTuple):
    """One delivered message, as the receiver decoded it."""

    src: str
    dst: str
    tag: str
    value: Any
    nbytes: int


class InMemoryFederation:
    """A hub of queues, one per ``(src, dst, tag)``; :meth:`endpoint` gives a party its view."""

    def __init__(self, *, recv_timeout_s: float = 120.0, record: bool = False) -> None:
        self.recv_timeout_s = recv_timeout_s
        self.record = record
        self.messages: list[Message] = []
        self.bytes_sent: dict[str, int] = defaultdict(int)
        self._queues: dict[tuple[str, str, str], queue.Queue[bytes]] = {}
        self._lock = threading.Lock()
        self._aborted: str | None = None

    def _queue(self, src: str, dst: str, tag: str) -> queue.Queue[bytes]:
        with self._lock:
            return self._queues.setdefault((src, dst, tag), queue.Queue())

    def endpoint(self, party_id: str) -> _Endpoint:
        """The :class:`~fedalgo.context.Federation` that party ``party_id`` uses."""
        return _Endpoint(self, str(party_id))

    def abort(self, reason: str) -> None:
        """Make every pending and future ``recv`` raise :class:`FederationAborted`."""
        self._aborted = reason

    @property
    def total_bytes(self) -> int:
        return sum(self.bytes_sent.values())

    def received_by(self, party_id: str) -> list[Message]:
        """Every recorded message delivered to ``party_id`` (needs ``record=True``)."""
        return [m for m in self.messages if m.dst == party_id]

    def _send(self, src: str, dst: str, tag: str, value: Any) -> None:
        data = codec.packb(value)
        with self._lock:
            self.bytes_sent[src] += len(data)
        self._queue(src, dst, tag).put(data)

    def _recv(self, src: str, dst: str, tag: str) -> Any:
        q = self._queue(src, dst, tag)
        deadline = time.monotonic() + self.recv_timeout_s
        while True:
            if self._aborted is not None:
                raise FederationAborted(f"aborted while waiting for {tag!r}: {self._aborted}")
            try:
                data = q.get(timeout=_POLL_S)
                break
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise FederationTimeout(
                        f"party {dst}: no {tag!r} from party {src} within {self.recv_timeout_s} s"
                    ) from None
        if self.record:
            # A copy of its own, so that a receiver mutating its value cannot alter the record.
            with self._lock:
                self.messages.append(Message(src, dst, tag, codec.unpackb(data), len(data)))
        return codec.unpackb(data, int_arrays=True)  # as a step's channel delivers it


class _Endpoint:
    def __init__(self, hub: InMemoryFederation, party_id: str) -> None:
        self._hub = hub
        self.party_id = party_id

    def send(self, dst_party: str, tag: str, value: Any) -> None:
        self._hub._send(self.party_id, str(dst_party), tag, value)

    def recv(self, src_party: str, tag: str) -> Any:
        return self._hub._recv(str(src_party), self.party_id, tag)


class Metric(NamedTuple):
    name: str
    value: Any
    step: int | None


@dataclass
class RunResult:
    """What :func:`run_parties` observed: each party's metrics, the hub, and the wall time."""

    metrics: dict[str, list[Metric]]
    federation: InMemoryFederation
    elapsed_s: float
    outputs: dict[str, dict[str, Path]] = field(default_factory=dict)

    def metric(self, party_id: str, name: str) -> list[Metric]:
        return [m for m in self.metrics[party_id] if m.name == name]

    def last(self, party_id: str, name: str) -> Any:
        """The value of the last ``name`` metric ``party_id`` reported."""
        found = self.metric(party_id, name)
        if not found:
            raise KeyError(f"party {party_id} reported no {name!r} metric")
        return found[-1].value


def roles_of(party_specs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Role → party ids, from party id → ``dict(role=...)``."""
    by_role: dict[str, list[str]] = defaultdict(list)
    for pid, party in party_specs.items():
        by_role[party["role"]].append(str(pid))
    return dict(by_role)


def run_parties(
    component_name: str,
    party_specs: Mapping[str, Mapping[str, Any]],
    parties: Mapping[str, Sequence[str]] | None = None,
    *,
    timeout_s: float = 300.0,
    federation: InMemoryFederation | None = None,
) -> RunResult:
    """Run one component on every party, each in its own thread, over an in-memory federation.

    ``party_specs`` maps party id → ``dict(role=..., args=..., inputs=..., outputs=...)`` and
    optionally ``computing=`` (a :class:`fedalgo.computing.Computing`; default: a local pool)
    and ``floors`` (the party's ``SecurityFloors``; none by default);
    ``parties`` (role → ids) defaults to the roles in ``party_specs``. The first exception any
    party raised is re-raised (with a note naming the party) after the others were aborted; a run
    still going after ``timeout_s`` is aborted and raises :class:`FederationTimeout`.
    """
    spec = get_component(component_name)
    if parties is None:
        parties = roles_of(party_specs)
    hub = federation or InMemoryFederation(recv_timeout_s=timeout_s)
    metrics: dict[str, list[Metric]] = {str(pid): [] for pid in party_specs}
    failures: list[tuple[str, BaseException]] = []
    lock = threading.Lock()

    def run_one(pid: str, party: Mapping[str, Any]) -> None:
        def on_metric(name: str, value: Any, step: int | None) -> None:
            metrics[pid].append(Metric(name, value, step))

        try:
            ctx = Context(
                role=party["role"],
                party_id=pid,
                parties=parties,
                args=party.get("args", {}),
                inputs=party.get("inputs", {}),
                outputs=party.get("outputs", {}),
                federation=hub.endpoint(pid),
                on_metric=on_metric,
                computing=party.get("computing"),
                floors=party.get("floors", NO_FLOORS),
            )
            try:
                spec.run(ctx)
            finally:
                ctx.close()
        except BaseException as exc:  # handed to the caller's thread below
            with lock:
                failures.append((pid, exc))
            hub.abort(f"party {pid} failed: {type(exc).__name__}: {exc}")

    threads = [
        threading.Thread(target=run_one, args=(str(pid), party), name=f"party-{pid}", daemon=True)
        for pid, party in party_specs.items()
    ]
    started = time.monotonic()
    for t in threads:
        t.start()
    deadline = started + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    if alive:
        hub.abort("run_parties timed out")
        for t in threads:
            t.join(5.0)
        raise FederationTimeout(f"{component_name} did not finish in {timeout_s} s: {alive}")
    if failures:
        # Parties aborted because of another's failure are consequences; report the cause.
        causes = [f for f in failures if not isinstance(f[1], FederationAborted)] or failures
        pid, exc = causes[0]
        role = next(p["role"] for k, p in party_specs.items() if str(k) == pid)
        exc.add_note(f"raised by party {pid} ({role}) in {component_name}")
        raise exc
    return RunResult(
        metrics=metrics,
        federation=hub,
        elapsed_s=time.monotonic() - started,
        outputs={
            str(pid): {k: Path(v) for k, v in p.get("outputs", {}).items()}
            for pid, p in party_specs.items()
        },
    )
