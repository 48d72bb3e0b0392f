"""The task-engine worker: takes ``task.run`` envelopes from ``fl.tasks`` and runs each step.

Offsets and crashes. The worker reads ``fl.tasks`` in the group ``task_engine-<party_id>`` and
commits a task's offset only once its step has *started*: work dir prepared, process launched and
``running`` published. So:

* a crash before that point (task taken and being set up) leaves the offset uncommitted, and the
  task is delivered again to this worker or another one of the group; the retried start reuses
  the same work dir (``<job>/<step>/<attempt>``). A worker takes a task only when it has a free
  slot, so no task sits uncommitted behind running steps;
* a crash after that point does not rerun the step: its process sees its socket close and exits
  (:data:`task_engine.channel.EXIT_WORKER_GONE`), and the last word on ``fl.status`` is
  ``running``. Every ``HEARTBEAT_INTERVAL_S`` the worker lists its live steps on ``fl.status``
  (``worker.heartbeat``); the flow_server fails a running step no heartbeat listed for
  ``HEARTBEAT_TIMEOUT_S`` ("worker lost"), which retries it at ``attempt + 1`` if it has retries
  left (``flow_server.heartbeats``).
  (A crash in the instant between ``running`` and the commit runs the step twice under the same
  attempt: the first copy exits with its worker, the second is fed the peers' messages from
  ``fed_since_ms`` again.)

Control. Every worker also reads ``fl.control`` without a group (each sees every command) from
the moment it started: ``job.stop`` kills the named job's steps here (with ``task`` set, only that
step's copies up to ``attempt``) and reports them ``canceled``; ``job.pause`` freezes them
(SIGSTOP on every process of the step) and ``job.resume`` thaws them (SIGCONT). A ``task.run``
that reaches the worker after its job was stopped (created before the stop) is reported
``canceled`` without running; one of a paused job starts frozen.

Shutdown is bounded: consuming stops, every running step is killed with its process group and
reported ``failed`` ("worker stopped"), then the health server and the bus are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from fedcore import failures, logs, messages, topics
from fedcore.bus import Bus
from fedcore.deadletter import DeadLetters, bounded
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from task_engine.execution import (
    CANCELED,
    FAILED,
    StepExecution,
    Task,
    TaskError,
    status_envelope,
)
from task_engine.health import HealthServer, bind_tcp, health_app, health_server
from task_engine.metrics import CountingBus, WorkerMetrics
from task_engine.runtime import StepRuntime, StepRuntimeError
from task_engine.sandbox import select_runtime

SHUTDOWN_TIMEOUT_S: Final = 20.0
# how many stopped / paused jobs a worker remembers (for task.run envelopes still in flight)
REMEMBERED_JOBS: Final = 1000
HEARTBEAT: Final = "worker.heartbeat"

_log = logging.getLogger(__name__)


class ControlError(ValueError):
    """An ``fl.control`` command this worker cannot apply (unknown, or a malformed body)."""


class Worker:
    """Consumes ``fl.tasks`` and runs up to ``settings.worker_concurrency`` steps at once.

    Steps run in the runtime given, or else the one ``settings.step_runtime`` names, chosen and
    checked when :meth:`run` starts (:func:`task_engine.sandbox.select_runtime`); ``runtime_env``
    is added to every step's environment (e.g. ``PYTHONPATH`` for ``component_modules``).
    """

    def __init__(
        self,
        settings: PartySettings,
        *,
        runtime: StepRuntime | None = None,
        runtime_env: Mapping[str, str] | None = None,
        component_modules: tuple[str, ...] = (),
        shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self._runtime = runtime
        self._runtime_env = dict(runtime_env or {})
        self._component_modules = component_modules
        self._shutdown_timeout_s = shutdown_timeout_s
        self.metrics = WorkerMetrics(running=lambda: len(self._executions))
        self._bus: Bus = CountingBus(
            settings.kafka_bootstrap,
            f"task_engine-{settings.party_id}",
            produced=self.metrics.produced,
        )
        self._dead = DeadLetters(self._bus, "task_engine", on_dead=self.metrics.dead.inc)
        self._slots = asyncio.Semaphore(max(1, settings.worker_concurrency))
        self._executions: dict[asyncio.Task[None], StepExecution] = {}
        self._stop = asyncio.Event()
        self._stopped = asyncio.Event()
        self._started = asyncio.Event()
        self._health: HealthServer | None = None
        self._failure: Exception | None = None
        self._entered = False
        # job id → when it was stopped (the stop envelope's ts); job ids paused now
        self._stopped_jobs: OrderedDict[str, float] = OrderedDict()
        self._paused_jobs: OrderedDict[str, None] = OrderedDict()
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{int(time.time() * 1000)}"

    @property
    def group_id(self) -> str:
        return f"task_engine-{self.settings.party_id}"

    @property
    def running(self) -> list[dict[str, Any]]:
        """The steps running now (the health endpoint's body; :meth:`heartbeat` lists them too)."""
        return [execution.describe() for execution in self._executions.values()]

    def heartbeat(self) -> Envelope:
        """The ``worker.heartbeat`` envelope listing the steps running now (``job_id`` empty: it
        is about the worker, not one job)."""
        return Envelope(
            type=HEARTBEAT,
            job_id="",
            src=self.settings.party_id,
            body={
                "party": self.settings.party_id,
                "worker": self.worker_id,
                "interval_s": self.settings.heartbeat_interval_s,
                "running": [
                    {"job_id": e.task.job_id, "task": e.task.step, "attempt": e.task.attempt}
                    for e in self._executions.values()
                ],
            },
        )

    async def wait_started(self) -> None:
        """Until the worker consumes and its health endpoint answers."""
        await self._started.wait()

    async def run(self) -> None:
        """Serve until :meth:`shutdown`; a fatal error (Kafka, health port) propagates."""
        if self._stop.is_set():
            raise RuntimeError("this worker has been shut down")
        self._entered = True
        listener: socket.socket | None = None
        try:
            async with contextlib.AsyncExitStack() as resources:
                if self._runtime is None:
                    # Refuses to start (SandboxUnavailable) rather than run steps unsandboxed.
                    self._runtime = await select_runtime(
                        self.settings, stack=resources, extra_env=self._runtime_env
                    )
                listener = bind_tcp(self.settings.bind_host, self.settings.task_engine_port)
                await self._serve(listener)
            if self._failure is not None:
                raise self._failure
        finally:
            if listener is not None:
                listener.close()
            self._stop.set()
            self._stopped.set()

    async def _serve(self, listener: socket.socket) -> None:
        """Health server and task consumption until stopped; then every step is stopped."""
        async with self._bus:
            self._health = health_server(
                health_app(self.settings, lambda: self.running, self.metrics.render),
                self.settings.bind_host,
                self.settings.task_engine_port,
            )
            serving = asyncio.create_task(self._health.serve([listener]), name="health")
            controlling = asyncio.create_task(self._control(), name="control")
            consuming = asyncio.create_task(self._consume(), name="consume")
            beating = asyncio.create_task(self._heartbeats(), name="heartbeats")
            stopping = asyncio.create_task(self._stop.wait(), name="stop")
            try:
                await self._wait_health_started(serving)
                self._started.set()
                done, _ = await asyncio.wait(
                    {serving, consuming, controlling, beating, stopping},
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for task in done - {stopping}:
                    task.result()  # a service loop ended: re-raise its error
                    raise RuntimeError(f"{task.get_name()} ended unexpectedly")
            finally:
                stopping.cancel()
                consuming.cancel()
                controlling.cancel()
                beating.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consuming
                with contextlib.suppress(asyncio.CancelledError):
                    await beating
                with contextlib.suppress(asyncio.CancelledError):
                    await controlling
                await self._stop_steps()
                self._health.should_exit = True
                await serving

    async def shutdown(self) -> None:
        """Stop consuming, kill running steps and close everything; safe to call repeatedly."""
        self._stop.set()
        if not self._entered:
            self._stopped.set()  # run() was never entered: nothing to wait for
        try:
            await asyncio.wait_for(self._stopped.wait(), self._shutdown_timeout_s)
        except TimeoutError:
            _log.warning("worker did not stop within %g s", self._shutdown_timeout_s)

    async def _wait_health_started(self, serving: asyncio.Task[None]) -> None:
        assert self._health is not None
        while not self._health.started:
            if serving.done():
                serving.result()
                raise RuntimeError(
                    f"health endpoint could not start on "
                    f"{self.settings.bind_host}:{self.settings.task_engine_port}"
                )
            await asyncio.sleep(0.02)

    async def _consume(self) -> None:
        async with self._bus.subscribe(
            [topics.TASKS], group_id=self.group_id, dead_letters=self._dead
        ) as sub:
            envelopes = aiter(sub)
            while True:
                # A free slot first, then the next task: no task waits uncommitted in a full
                # worker. (A worker full for longer than max.poll.interval leaves the group and
                # rejoins; it holds nothing meanwhile, so its partitions' tasks go elsewhere.)
                await self._slots.acquire()
                try:
                    env = await anext(envelopes)
                    self.metrics.consumed.labels(topics.TASKS).inc()
                    with logs.bind_envelope(env):  # the step's supervisor task inherits it
                        started = await self._guarded_take(env)
                    self.metrics.tasks.labels("started" if started else "skipped").inc()
                except BaseException:
                    self._slots.release()
                    raise
                if not started:
                    self._slots.release()
                await sub.commit()

    async def _heartbeats(self) -> None:
        """A heartbeat now and every interval; one Kafka refused is logged and the next tried
        (the flow_server's timeout spans several intervals)."""
        while True:
            try:
                await self._bus.publish(topics.STATUS, self.heartbeat())
                self.metrics.heartbeats.inc()
            except KafkaError as exc:
                _log.warning("heartbeat not published: %r", exc)
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    async def _control(self) -> None:
        since_ms = int(time.time() * 1000)
        async with self._bus.subscribe(
            [topics.CONTROL], group_id=None, start_time_ms=since_ms, dead_letters=self._dead
        ) as sub:
            async for env in sub:
                self.metrics.consumed.labels(topics.CONTROL).inc()
                try:
                    await self.on_control(env)
                except ControlError as exc:
                    await self._dead.put_envelope(env, str(exc), source=topics.CONTROL)

    async def on_control(self, env: Envelope) -> None:
        """Apply one ``fl.control`` command to this worker's steps of the job; a command that
        cannot be applied is a :class:`ControlError`."""
        if env.dst is not None and env.dst != self.settings.party_id:
            return
        mine = [e for e in self._executions.values() if e.task.job_id == env.job_id]
        if env.type not in ("job.stop", "job.pause", "job.resume"):
            raise ControlError(f"unknown control command {env.type!r}")
        try:
            command = messages.Command.of(env)
        except ValidationError as exc:
            raise ControlError(messages.describe(exc)) from exc
        if env.type == "job.stop":
            reason = command.reason or "stopped"
            upto = command.attempt
            if env.task is None:
                _remember(self._stopped_jobs, env.job_id, env.ts)
                self._paused_jobs.pop(env.job_id, None)
            else:
                mine = [
                    e
                    for e in mine
                    if e.task.step == env.task and (upto is None or e.task.attempt <= upto)
                ]
            _log.info("stopping %d step(s) of job %s: %s", len(mine), env.job_id, reason)
            await self._stop_all(mine, reason, state=CANCELED)
        elif env.type == "job.pause":
            _remember(self._paused_jobs, env.job_id, None)
            for execution in mine:
                execution.suspend()
        elif env.type == "job.resume":
            self._paused_jobs.pop(env.job_id, None)
            for execution in mine:
                execution.resume()

    async def _stop_all(
        self, executions: list[StepExecution], reason: str, *, state: str = FAILED
    ) -> None:
        """Stop each step; one that cannot be stopped (its runtime failed) does not keep the
        others running."""
        results = await asyncio.gather(
            *(e.stop(reason, state=state) for e in executions), return_exceptions=True
        )
        for execution, result in zip(executions, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, StepRuntimeError | OSError):
                    raise result
                t = execution.task
                _log.error(bounded(f"could not stop step {t.job_id}/{t.step}: {result}", 1024))

    async def _guarded_take(self, env: Envelope) -> bool:
        """:meth:`_take` for any envelope: one that cannot be applied fails its task (where it
        names one) and goes to the dead-letter topic, and never stops the worker. Only a Kafka
        error propagates (it is the worker's, not the message's: the task is read again)."""
        try:
            return await self._take(env)
        except KafkaError:
            raise
        except (TaskError, ValueError) as exc:
            reason = bounded(f"task.run refused: {exc}")
        except Exception as exc:  # the guard: a bug must cost one task, not the worker
            reason = bounded(f"task.run could not be applied: {type(exc).__name__}: {exc}")
            _log.exception("applying %s %s", env.type[:64], env.id[:64])
        if env.type == "task.run" and env.task:
            await self._bus.publish(topics.STATUS, _rejected(env, reason, self.settings))
        await self._dead.put_envelope(env, reason, source=topics.TASKS)
        return False

    async def _take(self, env: Envelope) -> bool:
        """Start the step of one ``fl.tasks`` envelope (True: the step owns the slot now) or skip
        it (False); either way the envelope is committed afterwards. A ``task.run`` this worker
        cannot apply raises (:class:`TaskError` for a malformed one)."""
        if env.type != "task.run":
            raise TaskError(f"a {env.type[:64]!r} envelope on {topics.TASKS}")
        if str(env.body.get("party_id")) != self.settings.party_id:
            # another party's (parties sharing one broker, as in tests): not this worker's
            _log.warning(
                "skipping a task.run for another party (this is %s)", self.settings.party_id
            )
            return False
        task = Task.from_envelope(env, roots=self.settings.roots)
        if any(
            (e.task.job_id, e.task.step, e.task.attempt) == (task.job_id, task.step, task.attempt)
            for e in self._executions.values()
        ):
            _log.warning(
                "step %s/%s attempt %d is already running here: skipping the repeat",
                task.job_id,
                task.step,
                task.attempt,
            )
            return False
        stopped_at = self._stopped_jobs.get(task.job_id)
        if stopped_at is not None and env.ts <= stopped_at:
            await self._bus.publish(
                topics.STATUS,
                status_envelope(
                    task, CANCELED, reason="the job was stopped", code=failures.STOPPED
                ),
            )
            return False
        assert self._runtime is not None, "run() selects the runtime first"
        execution = StepExecution(
            task,
            bus=self._bus,
            dead=self._dead,
            runtime=self._runtime,
            state_dir=Path(self.settings.state_dir),
            timeout_s=self.settings.task_timeout_s,
            imports=self._component_modules,
            floors=self.settings.floors,
        )
        try:
            await execution.start()
        except (StepRuntimeError, OSError) as exc:
            # the task was fine but its step could not be started here: failed, not set aside
            reason = bounded(f"could not start the step: {exc}")
            _log.error("step %s/%s: %s", task.job_id, task.step, reason)
            await self._bus.publish(
                topics.STATUS,
                status_envelope(task, FAILED, reason=reason, code=failures.RUNTIME_FAILED),
            )
            return False
        if task.job_id in self._paused_jobs:
            execution.suspend()
        supervisor = asyncio.create_task(self._supervise(execution), name=f"step-{task.step}")
        self._executions[supervisor] = execution
        return True

    async def _supervise(self, execution: StepExecution) -> None:
        try:
            outcome = await execution.supervise()
            self.metrics.step_duration.labels(execution.task.component, outcome.state).observe(
                time.time() - execution.started_at
            )
        except Exception as exc:  # Kafka refused the final status: fatal, run() re-raises
            self._failure = exc
            self._stop.set()
        finally:
            self._slots.release()
            current = asyncio.current_task()
            if current is not None:
                self._executions.pop(current, None)

    async def _stop_steps(self) -> None:
        if not self._executions:
            return
        supervisors = list(self._executions)
        await self._stop_all(list(self._executions.values()), "worker stopped")
        # The supervisors report each step as failed; bounded, since Kafka may be gone.
        _, pending = await asyncio.wait(supervisors, timeout=self._shutdown_timeout_s / 2)
        for task in pending:
            task.cancel()
        await asyncio.wait(supervisors)


_V = TypeVar("_V")


def _remember(jobs: OrderedDict[str, _V], job_id: str, value: _V) -> None:
    jobs[job_id] = value
    jobs.move_to_end(job_id)
    while len(jobs) > REMEMBERED_JOBS:
        jobs.popitem(last=False)


MAX_ATTEMPT: Final = messages.MAX_ATTEMPT


def _rejected(env: Envelope, reason: str, settings: PartySettings) -> Envelope:
    attempt = env.body.get("attempt")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or not 1 <= attempt <= MAX_ATTEMPT:
        attempt = None  # the flow_server then matches the step's current attempt
    return Envelope(
        type="task.status",
        job_id=env.job_id,
        task=env.task,
        src=settings.party_id,
        body={
            "party": settings.party_id,
            "state": FAILED,
            "reason": reason,
            "code": failures.BAD_ARGUMENTS,
            "outputs": {},
            "attempt": attempt,
        },
    )
