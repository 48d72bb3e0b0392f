"""One step on the worker side: its work dir, socket, process, relays and reported outcome.

:meth:`StepExecution.start` prepares the work dir, opens the step socket and the step's inbound
federation subscription, launches the process and publishes ``running``; :meth:`StepExecution.
supervise` then relays frames until the process has ended, and publishes ``success`` or ``failed``
exactly once. The relays:

* step ``send``   → ``fed`` envelope on ``fl.out.fed`` (``task`` = step, body ``tag``, ``attempt``,
  ``value``)
* ``fl.in.fed``   → step ``fed`` frames, only envelopes for this job, step, attempt and party
* step ``metric`` → ``metric`` envelope on ``fl.results``; step ``log`` → ``log`` on ``fl.logs``
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from fedcore import failures, messages, paths, topics
from fedcore.bus import Bus, Subscription
from fedcore.deadletter import DeadLetters, bounded
from fedcore.envelope import Envelope
from fedcore.floors import SecurityFloors
from task_engine import frames
from task_engine.runtime import StepExit, StepHandle, StepLaunch, StepRuntime, StepRuntimeError
from task_engine.step import SOCKET_FILE, write_spec

RUNNING: Final = "running"
SUCCESS: Final = "success"
FAILED: Final = "failed"
CANCELED: Final = "canceled"
TIMEOUT: Final = "timeout"
PLATFORM_FAULT: Final = "platform"  # task.status ``fault``: see flow_server.protocol.faults
# a step's own wall-clock limit, in seconds: its ``timeout`` arg, else the job's ``task-timeout``
TIMEOUT_ARGS: Final = ("timeout", "task-timeout")

# After the process has exited, how long to wait for the frames still in the socket buffer.
DRAIN_TIMEOUT_S: Final = 5.0

_log = logging.getLogger(__name__)


class TaskError(ValueError):
    """A ``task.run`` body that cannot be run (missing or malformed fields)."""


@dataclass(frozen=True)
class Task:
    """A ``task.run`` envelope, validated."""

    job_id: str
    step: str
    component: str
    role: str
    party_id: str
    parties: dict[str, list[str]]
    args: dict[str, Any]
    inputs: dict[str, str]
    output_dir: str
    fed_since_ms: int
    attempt: int

    @classmethod
    def from_envelope(cls, env: Envelope, *, roots: Sequence[Path]) -> Task:
        """The task of a ``task.run`` envelope (:class:`fedcore.messages.TaskRun`);
        :class:`TaskError` says what is wrong with it.

        The job id and step name become directories of the work dir, so each must be one plain
        path component; the inputs and the output dir must lie under ``roots`` (the party's
        state and data roots) once resolved, and are handed on resolved.
        """
        if not env.task:
            raise TaskError("task.run envelope has no task (step name)")
        try:
            run = messages.TaskRun.of(env)
        except ValidationError as exc:
            raise TaskError(messages.describe(exc)) from exc
        try:
            return cls(
                job_id=paths.name(env.job_id, what="job id"),
                step=paths.name(env.task, what="step name"),
                component=run.component,
                role=run.role,
                party_id=run.party_id,
                parties={role: list(ids) for role, ids in run.parties.items()},
                args=dict(run.args),
                inputs={
                    name: str(paths.under(path, roots, what=f"input {name[:64]!r}"))
                    for name, path in run.inputs.items()
                },
                output_dir=str(paths.under(run.output_dir, roots, what="output_dir")),
                fed_since_ms=run.fed_since_ms,
                attempt=run.attempt,
            )
        except paths.PathRefused as exc:
            raise TaskError(str(exc)) from exc

    def timeout_s(self, default_s: float) -> float:
        """The step's wall-clock limit: its own (``TIMEOUT_ARGS``), at most the worker's."""
        for key in TIMEOUT_ARGS:
            value = self.args.get(key)
            if value is None:
                continue
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                continue
            if seconds > 0:
                return min(seconds, default_s)
        return default_s

    @property
    def peers(self) -> set[str]:
        return {p for ids in self.parties.values() for p in ids} - {self.party_id}

    def spec(self, imports: tuple[str, ...], floors: SecurityFloors) -> dict[str, Any]:
        """What the step process needs to know (see :mod:`task_engine.step`); ``floors`` are the
        party's own, never anything from the task.run."""
        return {
            "job_id": self.job_id,
            "task": self.step,
            "attempt": self.attempt,
            "component": self.component,
            "role": self.role,
            "party_id": self.party_id,
            "parties": self.parties,
            "args": self.args,
            "inputs": self.inputs,
            "output_dir": self.output_dir,
            "imports": list(imports),
            "floors": floors.model_dump(),
        }


def status_envelope(
    task: Task,
    state: str,
    *,
    reason: str | None = None,
    code: str | None = None,
    outputs: Mapping[str, str] | None = None,
    fault: str | None = None,
) -> Envelope:
    """A step's state for this party's flow_server and dashboard: ``reason`` is the local detail,
    ``code`` (``fedcore.failures``) what the flow_server may forward to the other parties."""
    body: dict[str, Any] = {
        "party": task.party_id,
        "state": state,
        "reason": reason,
        "code": code,
        "outputs": dict(outputs or {}),
        "attempt": task.attempt,
    }
    if fault is not None:
        body["fault"] = fault
    return Envelope(
        type="task.status", job_id=task.job_id, task=task.step, src=task.party_id, body=body
    )


def bind_unix(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, however long the path (sun_path holds ~107 bytes)."""
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Bind through the directory's fd so that only the short last component counts.
        sock.bind(f"/proc/self/fd/{dir_fd}/{path.name}")
        os.chmod(path, 0o600)
        sock.listen(1)
    except OSError:
        sock.close()
        raise
    finally:
        os.close(dir_fd)
    return sock


def existing_files(outputs: Mapping[str, str]) -> dict[str, str]:
    """The outputs whose file the step did write (a component may leave an output unwritten)."""
    return {name: path for name, path in outputs.items() if Path(path).exists()}


@dataclass
class Outcome:
    state: str
    reason: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    code: str | None = None
    fault: str | None = None  # "platform": the platform ended the step, not its own error


class StepExecution:
    """Runs one ``task.run`` to its reported end."""

    def __init__(
        self,
        task: Task,
        *,
        bus: Bus,
        dead: DeadLetters,
        runtime: StepRuntime,
        state_dir: Path,
        timeout_s: float,
        imports: tuple[str, ...] = (),
        floors: SecurityFloors | None = None,
    ) -> None:
        self.task = task
        self._floors = floors if floors is not None else SecurityFloors()
        self._bus = bus
        self._dead = dead
        self._runtime = runtime
        self._timeout_s = task.timeout_s(timeout_s)
        self._imports = imports
        self.work_dir = state_dir / "work" / task.job_id / task.step / str(task.attempt)
        self.started_at = time.time()
        self._started_mono = time.monotonic()
        self._server: asyncio.Server | None = None
        self._fed: Subscription | None = None
        self._handle: StepHandle | None = None
        self._connected = asyncio.Event()
        self._frames_done = asyncio.Event()
        self._relays: list[asyncio.Task[None]] = []
        self._result: Outcome | None = None
        self._protocol_error: str | None = None
        self._stop_reason: str | None = None
        self._stop_state = FAILED
        self._seen_fed: set[str] = set()
        # pause bookkeeping: time spent suspended does not count against the timeout
        self._suspended_at: float | None = None
        self._suspended_s = 0.0
        self._suspension_changed = asyncio.Event()

    def describe(self) -> dict[str, Any]:
        t = self.task
        return {
            "job_id": t.job_id,
            "task": t.step,
            "attempt": t.attempt,
            "component": t.component,
            "role": t.role,
            "started_at": self.started_at,
            "suspended": self.suspended,
        }

    @property
    def suspended(self) -> bool:
        return self._suspended_at is not None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Work dir, socket, inbound subscription, process; then ``running`` is published.

        On an error (or cancellation) whatever was opened or started is closed or killed again
        before the error propagates.
        """
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            write_spec(self.work_dir, self.task.spec(self._imports, self._floors))
            sock_path = self.work_dir / SOCKET_FILE
            sock_path.unlink(missing_ok=True)  # a previous worker's, for the same attempt
            self._server = await asyncio.start_unix_server(
                self._on_connect, sock=bind_unix(sock_path)
            )
            # a record no step can read (undecodable, over the chunk bounds) is set aside by
            # each running step's reader that meets it
            self._fed = self._bus.subscribe(
                [topics.IN_FED],
                group_id=None,
                start_time_ms=self.task.fed_since_ms,
                dead_letters=self._dead,
            )
            await self._fed.__aenter__()
            self._handle = await self._runtime.start(self._launch())
            await self._bus.publish(topics.STATUS, status_envelope(self.task, RUNNING))
        except BaseException:
            if self._handle is not None:
                await self._handle.kill()
            await self._close()
            raise

    def _launch(self) -> StepLaunch:
        # The step checks the master against the party's offer (fedalgo.computing.choice) and
        # fails with the reason; the runtime only sizes the sandbox by it.
        master = self.task.args.get("spark-master-name")
        spark_master = master.strip() if isinstance(master, str) else ""
        return StepLaunch(
            self.work_dir,
            inputs=tuple(Path(p) for p in self.task.inputs.values() if "://" not in p),
            writable=(Path(self.task.output_dir),),
            spark_master=spark_master,
        )

    async def supervise(self) -> Outcome:
        """Relay until the step has ended; publish and return its outcome."""
        assert self._handle is not None, "start() first"
        try:
            outcome = await self._await_end(self._handle)
        except (StepRuntimeError, OSError) as exc:
            # e.g. the Kubernetes API failed the watch: this step ends, the worker carries on
            outcome = Outcome(
                FAILED, bounded(f"the step's runtime failed: {exc}"), code=failures.RUNTIME_FAILED
            )
        finally:
            await self._close()
        await self._bus.publish(
            topics.STATUS,
            status_envelope(
                self.task,
                outcome.state,
                reason=outcome.reason,
                code=outcome.code,
                outputs=outcome.outputs,
                fault=outcome.fault,
            ),
        )
        _log.info(
            "step %s/%s attempt %d: %s%s",
            self.task.job_id,
            self.task.step,
            self.task.attempt,
            outcome.state,
            f" ({outcome.reason})" if outcome.reason else "",
        )
        return outcome

    async def stop(self, reason: str, *, state: str = FAILED) -> None:
        """Kill the step (worker shutdown, a stop command); supervise() reports it as ``state``."""
        self._stop_reason = reason
        self._stop_state = state
        if self._handle is not None:
            await self._handle.kill()

    def suspend(self) -> None:
        """Freeze the step's processes (pause); its timeout clock stops too."""
        if self._handle is None or self.suspended:
            return
        if self._handle.suspend():
            self._suspended_at = time.monotonic()
            self._suspension_changed.set()
        else:
            _log.warning("step %s/%s cannot be suspended here", self.task.job_id, self.task.step)

    def resume(self) -> None:
        if self._handle is None or self._suspended_at is None:
            return
        self._handle.resume()
        self._suspended_s += time.monotonic() - self._suspended_at
        self._suspended_at = None
        self._suspension_changed.set()

    def _active_s(self) -> float:
        """Wall-clock seconds the step has run, not counting suspensions."""
        paused = self._suspended_s
        if self._suspended_at is not None:
            paused += time.monotonic() - self._suspended_at
        return time.monotonic() - self._started_mono - paused

    async def _wait_or_time_out(self, handle: StepHandle) -> StepExit | None:
        """The step's exit, or None once it has run (unsuspended) for longer than its timeout."""
        ended = asyncio.ensure_future(handle.wait())
        try:
            while True:
                self._suspension_changed.clear()
                changed = asyncio.ensure_future(self._suspension_changed.wait())
                limit = None if self.suspended else max(self._timeout_s - self._active_s(), 0.0)
                done, _ = await asyncio.wait(
                    {ended, changed}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                if ended in done:
                    return ended.result()
                if changed not in done:
                    return None
        finally:
            if not ended.done():
                ended.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ended

    async def _await_end(self, handle: StepHandle) -> Outcome:
        ended = await self._wait_or_time_out(handle)
        if ended is None:
            await handle.kill()
            reason = f"step timed out after {self._timeout_s:g} s and was killed"
            return Outcome(TIMEOUT, reason, code=failures.TIMED_OUT)
        with contextlib.suppress(TimeoutError):
            # Frames the step wrote just before exiting may still be in the socket buffer.
            if self._connected.is_set():
                await asyncio.wait_for(self._frames_done.wait(), DRAIN_TIMEOUT_S)
        if self._stop_reason is not None:
            return Outcome(self._stop_state, self._stop_reason, code=failures.STOPPED)
        if self._protocol_error is not None:
            return Outcome(FAILED, self._protocol_error, code=failures.STEP_PROTOCOL)
        if self._result is not None:
            if self._result.state == SUCCESS:
                return Outcome(SUCCESS, None, existing_files(self._result.outputs))
            return self._result
        fault = PLATFORM_FAULT if ended.platform_fault is not None else None
        return Outcome(FAILED, ended.describe(), code=failures.STEP_CRASHED, fault=fault)

    async def _close(self) -> None:
        for relay in self._relays:
            relay.cancel()
        for relay in self._relays:
            with contextlib.suppress(asyncio.CancelledError):
                await relay
        self._relays.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._fed is not None:
            await self._fed.__aexit__(None, None, None)
            self._fed = None
        (self.work_dir / SOCKET_FILE).unlink(missing_ok=True)

    # -- relays ----------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._connected.is_set():
            writer.close()  # one step, one connection
            return
        self._connected.set()
        handler = asyncio.current_task()
        if handler is not None:
            self._relays.append(handler)
        inbound = asyncio.create_task(self._relay_inbound(writer), name="fed-inbound")
        self._relays.append(inbound)
        try:
            await self._relay_outbound(reader)
        finally:
            self._frames_done.set()
            inbound.cancel()
            writer.close()

    async def _relay_outbound(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                frame = await frames.read_frame(reader)
            except frames.ChannelClosed:
                return
            except (frames.FrameError, OSError) as exc:
                await self._fail_protocol(f"bad frame from the step process: {exc}")
                return
            if frame["kind"] not in frames.STEP_KINDS:
                await self._fail_protocol(f"a step may not send {frame['kind']!r} frames")
                return
            await self._handle_frame(frame)

    async def _handle_frame(self, frame: frames.Frame) -> None:
        t = self.task
        kind = frame["kind"]
        if kind == frames.SEND:
            dst = str(frame["dst"])
            if dst not in t.peers:
                await self._fail_protocol(f"step sent {frame['tag']!r} to {dst}, not a peer")
                return
            await self._bus.publish(
                topics.OUT_FED,
                Envelope(
                    type="fed",
                    job_id=t.job_id,
                    task=t.step,
                    src=t.party_id,
                    dst=dst,
                    body={"tag": frame["tag"], "attempt": t.attempt, "value": frame["value"]},
                ),
            )
        elif kind == frames.METRIC:
            body = {"party": t.party_id, "name": frame["name"], "value": frame["value"]}
            body["step"] = frame["step"]
            await self._bus.publish(
                topics.RESULTS,
                Envelope(type="metric", job_id=t.job_id, task=t.step, src=t.party_id, body=body),
            )
        elif kind == frames.LOG:
            await self._bus.publish(
                topics.LOGS,
                Envelope(
                    type="log",
                    job_id=t.job_id,
                    task=t.step,
                    src=t.party_id,
                    body={"party": t.party_id, "level": frame["level"], "line": frame["line"]},
                ),
            )
        elif kind == frames.DONE:
            outputs = {str(k): str(v) for k, v in dict(frame["outputs"]).items()}
            try:
                # the flow_server registers and exports what is reported here
                for name, path in outputs.items():
                    paths.under(path, [Path(t.output_dir)], what=f"output {name[:64]!r}")
            except paths.PathRefused as exc:
                await self._fail_protocol(str(exc))
                return
            self._result = Outcome(SUCCESS, None, outputs)
        elif kind == frames.FAILED:
            code = failures.known(frame.get("code"))
            self._result = Outcome(FAILED, str(frame["reason"]), code=code)

    async def _fail_protocol(self, reason: str) -> None:
        self._protocol_error = reason
        if self._handle is not None:
            await self._handle.kill()

    async def _relay_inbound(self, writer: asyncio.StreamWriter) -> None:
        assert self._fed is not None
        t = self.task
        async for env in self._fed:
            if (
                env.type != "fed"
                or env.job_id != t.job_id
                or env.task != t.step
                or env.dst != t.party_id
                or env.body.get("attempt") != t.attempt
                or env.id in self._seen_fed  # at-least-once delivery: drop a repeat
            ):
                continue
            self._seen_fed.add(env.id)
            try:
                fed = checked_fed(env, t)
            except FedRefused as exc:
                await self._dead.put_envelope(env, str(exc), source=topics.IN_FED)
                continue
            frame = {"kind": frames.FED, "src": env.src, "tag": fed.tag, "value": fed.value}
            try:
                await frames.write_frame(writer, frame)
            except (ConnectionError, frames.FrameError) as exc:
                await self._fail_protocol(f"could not hand a message to the step: {exc}")
                return


class FedRefused(ValueError):
    """A ``fed`` envelope for a step that cannot be handed to it; the message says why."""


def checked_fed(env: Envelope, task: Task) -> messages.Fed:
    """The body of a ``fed`` envelope addressed to ``task``'s step, if a party of the step sent
    a well-formed one."""
    try:
        fed = messages.Fed.of(env)
    except ValidationError as exc:
        raise FedRefused(messages.describe(exc)) from exc
    if env.src not in task.peers:
        raise FedRefused(f"a fed message from {env.src}, not a party of this step")
    return fed
