"""One component run with each party in its own process, so that a party's memory is its own.

:func:`fedalgo.federation.run_parties` runs every party as a thread of one process: its peak
memory is that of all the parties together. Here each party is a spawned process (its Paillier
pool workers are its children), the parties talk over one pipe per ordered pair with the same
:mod:`fedcore.codec` round trip as the in-memory federation, and each reports its own wall and CPU
time, bytes sent and memory:

* ``process_peak_rss_mb``: the party process's peak resident memory (``VmHWM``, exact);
* ``worker_peak_rss_mb``: the largest peak of one of its pool workers (``VmHWM``, read every
  0.1 s while the worker lives, so growth in its last tenth of a second can be missed);
* ``peak_rss_mb``: the party's whole footprint, process and every live descendant summed, sampled
  every 0.1 s from ``/proc`` (at least ``process_peak_rss_mb``). Sampling can miss a spike
  shorter than the interval; shared library pages are counted once per process, so the sum
  slightly overstates what the party needs.

``ru_maxrss`` is not used: a spawned process is forked before it execs the interpreter, and its
``ru_maxrss`` keeps the parent's resident size from before the exec (every party then showed
the bench process's ~155 MiB).

Linux only (``/proc``), like the benchmarks' machine.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import resource
import signal
import threading
import time
import traceback
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from fedalgo.errors import FederationTimeout
from fedalgo.federation import roles_of

_SAMPLE_S = 0.1
_PIECE_BYTES = 1 << 24
_PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20


class PeerGone(RuntimeError):
    """A peer closed its pipe before sending what was awaited: a consequence of its failure."""


@dataclass(frozen=True)
class PartyReport:
    """What one party process measured of its own run."""

    party: str
    role: str
    wall_s: float
    cpu_s: float
    bytes_sent: int
    peak_rss_mb: float
    process_peak_rss_mb: float
    worker_peak_rss_mb: float
    jvm_peak_rss_mb: float  # a Spark party's JVM (on local[N] its executors are threads of it)
    started: float  # time.monotonic() (system-wide on Linux) when the component started
    finished: float
    engine_start_s: float  # starting the computing engine (a Spark session: its JVM), before
    executors: int
    spark_stages: dict[str, dict[str, float | int]]  # the engine's per-work stage timings


@dataclass(frozen=True)
class ProcessRun:
    """Every party's report; ``wall_s`` from the first party's start to the last one's end."""

    reports: dict[str, PartyReport]

    @property
    def wall_s(self) -> float:
        reports = self.reports.values()
        return max(r.finished for r in reports) - min(r.started for r in reports)


class _PipeFederation:
    """A party's :class:`fedalgo.context.Federation` over pipes; a thread drains the inbound ones.

    Draining into memory as messages arrive keeps senders from blocking on a full pipe, which
    gives the in-memory federation's queue semantics (and its memory cost: a message sits at the
    receiver, encoded, until received).
    """

    def __init__(
        self,
        outbound: Mapping[str, Connection],
        inbound: Mapping[str, Connection],
        *,
        recv_timeout_s: float,
    ) -> None:
        self._outbound = dict(outbound)
        self._recv_timeout_s = recv_timeout_s
        self._stash: dict[tuple[str, str], deque[bytearray]] = defaultdict(deque)
        self._closed: set[str] = set()
        self._arrived = threading.Condition()
        self.bytes_sent = 0
        threading.Thread(
            target=self._drain, args=(dict(inbound),), name="federation-drain", daemon=True
        ).start()

    def _drain(self, inbound: dict[str, Connection]) -> None:
        src_of = {conn: src for src, conn in inbound.items()}
        while src_of:
            for conn in wait(list(src_of)):
                assert isinstance(conn, Connection)
                src = src_of[conn]
                try:
                    tag = conn.recv_bytes().decode()
                    data = bytearray(int.from_bytes(conn.recv_bytes(), "big"))
                    got = 0
                    while got < len(data):
                        got += conn.recv_bytes_into(data, got)
                except (EOFError, OSError):
                    del src_of[conn]
                    with self._arrived:
                        self._closed.add(src)
                        self._arrived.notify_all()
                    continue
                with self._arrived:
                    self._stash[(src, tag)].append(data)
                    self._arrived.notify_all()

    def send(self, dst_party: str, tag: str, value: Any) -> None:
        from fedcore import codec

        # In pieces (an encoded array's are its workers' bytes, not copied), each cut small:
        # the receiving end reads a pipe message whole before copying it into place.
        pieces = codec.pack_pieces(value)
        size = sum(len(p) for p in pieces)
        conn = self._outbound[str(dst_party)]
        conn.send_bytes(tag.encode())
        conn.send_bytes(size.to_bytes(8, "big"))
        for piece in pieces:
            view = memoryview(piece)
            for start in range(0, len(view), _PIECE_BYTES):
                conn.send_bytes(view[start : start + _PIECE_BYTES])
        self.bytes_sent += size

    def recv(self, src_party: str, tag: str) -> Any:
        from fedcore import codec

        src = str(src_party)
        deadline = time.monotonic() + self._recv_timeout_s
        with self._arrived:
            while not self._stash[(src, tag)]:
                if src in self._closed:
                    raise PeerGone(f"party {src} closed its pipe before sending {tag!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise FederationTimeout(
                        f"no {tag!r} from party {src} within {self._recv_timeout_s} s"
                    )
                self._arrived.wait(remaining)
            data = self._stash[(src, tag)].popleft()
        return codec.unpackb(data, int_arrays=True)  # as a step's channel delivers it

    def close(self) -> None:
        for conn in self._outbound.values():
            conn.close()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    kids = [int(k) for k in fh.read().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * _PAGE_MB
    except (OSError, IndexError, ValueError):
        return 0.0  # the process ended between listing and reading


def _hwm_mb(pid: int | str) -> float:
    """A process's peak resident memory since its exec (VmHWM): a spawned process's
    ``ru_maxrss`` would still count the parent image it was forked from before the exec."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError):
        pass
    return 0.0


def _is_jvm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip() == "java"
    except OSError:
        return False


class _TreeSampler:
    """Sampled: the peak of (this process + every live descendant) resident memory, the
    largest peak (VmHWM) of any one descendant but a JVM (pool workers, Spark's Python workers)
    and the peak of the JVM (Spark's driver, and on ``local[N]`` its executors)."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.descendant_peak_mb = 0.0
        self.jvm_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while True:
            kids = _descendants(me)
            total = _rss_mb(me) + sum(_rss_mb(p) for p in kids)
            self.peak_mb = max(self.peak_mb, total)
            for kid in kids:
                if _is_jvm(kid):
                    self.jvm_peak_mb = max(self.jvm_peak_mb, _hwm_mb(kid))
                else:
                    self.descendant_peak_mb = max(self.descendant_peak_mb, _hwm_mb(kid))
            if self._stop.wait(_SAMPLE_S):
                return


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _party_main(
    component: str,
    pid: str,
    parties: dict[str, list[str]],
    spec: dict[str, Any],
    outbound: dict[str, Connection],
    inbound: dict[str, Connection],
    results: multiprocessing.Queue[dict[str, Any]],
    timeout_s: float,
) -> None:
    federation: _PipeFederation | None = None
    try:
        from fedalgo.components import get_component
        from fedalgo.computing.choice import SparkOffer, choose, open_computing
        from fedalgo.context import Context

        with _TreeSampler() as sampler:
            federation = _PipeFederation(outbound, inbound, recv_timeout_s=timeout_s)
            engine_started = time.monotonic()
            # The bench's operator offers the master it names (as SPARK_MASTER would).
            master = spec.get("spark_master", "")
            offer = SparkOffer(master=master, submit_args=spec.get("spark_submit_args", ""))
            choice = choose({"spark-master-name": master}, offer)
            with open_computing(choice) as computing:
                engine_start_s = time.monotonic() - engine_started
                ctx = Context(
                    role=spec["role"],
                    party_id=pid,
                    parties=parties,
                    args=spec.get("args", {}),
                    inputs=spec.get("inputs", {}),
                    outputs=spec.get("outputs", {}),
                    federation=federation,
                    computing=computing,
                )
                run = get_component(component).run  # checks the args as a step would
                cpu_started, started = _cpu_s(), time.monotonic()
                run(ctx)
                finished = time.monotonic()
                cpu_s = _cpu_s() - cpu_started
                executors = computing.executors
                spark_stages = computing.stage_timings()
        process_mb = _hwm_mb("self")
        report = PartyReport(
            party=pid,
            role=spec["role"],
            wall_s=finished - started,
            cpu_s=cpu_s,
            bytes_sent=federation.bytes_sent,
            peak_rss_mb=max(sampler.peak_mb, process_mb),
            process_peak_rss_mb=process_mb,
            worker_peak_rss_mb=sampler.descendant_peak_mb,
            jvm_peak_rss_mb=sampler.jvm_peak_mb,
            started=started,
            finished=finished,
            engine_start_s=engine_start_s,
            executors=executors,
            spark_stages=spark_stages,
        )
        results.put({"party": pid, "report": report})
    except BaseException as exc:  # reported to the parent, which stops the other parties
        consequence = isinstance(exc, PeerGone)
        results.put({"party": pid, "error": traceback.format_exc(), "consequence": consequence})
        raise SystemExit(1) from None
    finally:
        if federation is not None:
            federation.close()


def run_in_processes(
    component: str, party_specs: Mapping[str, Mapping[str, Any]], *, timeout_s: float
) -> ProcessRun:
    """Run ``component`` with each party of ``party_specs`` in its own spawned process.

    ``party_specs`` is what :func:`fedalgo.federation.run_parties` takes (party id → role, args,
    inputs, outputs), with ``spark_master`` instead of ``computing`` (each party starts its own
    engine: no master means the local pool). A party's failure stops the others and raises
    :class:`RuntimeError` with its traceback; a run still going after ``timeout_s`` raises
    :class:`FederationTimeout`.
    """
    mp = multiprocessing.get_context("spawn")
    ids = [str(p) for p in party_specs]
    by_role = roles_of(party_specs)
    pipes = {(a, b): mp.Pipe(duplex=False) for a in ids for b in ids if a != b}  # (reader, writer)
    results: multiprocessing.Queue[dict[str, Any]] = mp.Queue()
    procs = {
        pid: mp.Process(
            target=_party_main,
            name=f"party-{pid}",
            args=(
                component,
                pid,
                by_role,
                dict(party_specs[pid]),
                {b: pipes[(pid, b)][1] for b in ids if b != pid},
                {a: pipes[(a, pid)][0] for a in ids if a != pid},
                results,
                timeout_s,
            ),
        )
        for pid in ids
    }
    for proc in procs.values():
        proc.start()
    for reader, writer in pipes.values():  # the parties hold their own ends now
        reader.close()
        writer.close()
    reports: dict[str, PartyReport] = {}
    errors: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    grace: float | None = None  # after a failure, how long the others have to report theirs
    try:
        while len(reports) + len(errors) < len(procs):
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                for pid, proc in procs.items():
                    if proc.exitcode not in (None, 0) and pid not in errors and pid not in reports:
                        errors[pid] = {"error": f"exit code {proc.exitcode} (killed?)"}
                        grace = grace or time.monotonic() + 5.0
                if grace is not None and time.monotonic() > grace:
                    break
                if time.monotonic() > deadline:
                    raise FederationTimeout(
                        f"{component} did not finish in {timeout_s} s"
                    ) from None
                continue
            if "report" in message:
                reports[message["party"]] = message["report"]
            else:
                errors[message["party"]] = message
                grace = grace or time.monotonic() + 5.0
    finally:
        for proc in procs.values():
            if proc.is_alive() and (errors or len(reports) < len(procs)):
                # Its pool workers first: they would outlive it, busy on a shared machine.
                for child in _descendants(proc.pid or 0):
                    with contextlib.suppress(OSError):
                        os.kill(child, signal.SIGTERM)
                proc.terminate()
            proc.join(10.0)
    if errors:
        causes = {p: e for p, e in errors.items() if not e.get("consequence")} or errors
        pid, error = next(iter(causes.items()))
        role = party_specs[pid]["role"]
        raise RuntimeError(f"party {pid} ({role}) failed in {component}:\n{error['error']}")
    return ProcessRun(reports)
