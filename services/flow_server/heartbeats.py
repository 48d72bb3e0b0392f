"""Worker heartbeats: the flow_server's watch over the steps its own task_engine runs.

Every task_engine worker publishes ``worker.heartbeat`` on ``fl.status`` every
``HEARTBEAT_INTERVAL_S``, listing the steps it runs (job, step, attempt). The flow_server keeps,
in memory only, when each of *this party's* running steps was last covered (by its ``running``
status or a heartbeat) and one asyncio timer per such step. A step not covered for
``HEARTBEAT_TIMEOUT_S`` (its worker was SIGKILLed, or its machine vanished) is reported ``failed``
with the reason "worker lost: no heartbeat for N s": that status is applied like one from the
worker (so ``auto-retries`` runs the step again at attempt + 1 on every party of the step, each
killing its own copy of the old attempt, and without retries the job fails everywhere) and is
also published on ``fl.status`` for the dashboard. A late status of the lost attempt is then
ignored as an older attempt's.

Timers are re-armed at start-up for every step the database says runs here, with a full timeout
from then, so a restarted flow_server still catches a worker that died while it was down.
Nothing polls the database: a timer that fires checks the one task it is about.

The timeout also absorbs the event consumer's lag (heartbeats are read in order with the other
``fl.status`` events); heartbeats are never written to the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fedcore import failures, topics
from fedcore.envelope import Envelope
from fedcore.messages import TaskStatus, WorkerHeartbeat
from flow_server import protocol
from flow_server.models import Job, JobState, Task, TaskState

log = logging.getLogger(__name__)

HEARTBEAT: Final = "worker.heartbeat"
TASK_STATUS: Final = "task.status"


@dataclass(frozen=True)
class RunningStep:
    """One attempt of one step of a job, on this party."""

    job_id: str
    step: str
    attempt: int


Lost = Callable[[RunningStep, float], Coroutine[Any, Any, None]]


class HeartbeatWatch:
    """One timer per running step of this party; ``lost`` is awaited for a step whose timer ran
    out without a heartbeat covering it. ``close()`` cancels everything."""

    def __init__(self, me: str, *, timeout_s: float, lost: Lost) -> None:
        self._me = me
        self._timeout_s = timeout_s
        self._lost = lost
        # step -> (when it was last covered, on the loop's monotonic clock; its timer)
        self._seen: dict[RunningStep, float] = {}
        self._timers: dict[RunningStep, asyncio.TimerHandle] = {}
        self._firing: set[asyncio.Task[None]] = set()

    @property
    def watched(self) -> frozenset[RunningStep]:
        return frozenset(self._timers)

    def watch(self, step: RunningStep, *, seen_at: float | None = None) -> None:
        """``step`` runs here and was covered at ``seen_at`` (a wall-clock time; default now)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        # a heartbeat read late (consumer lag) covers the step from when it was sent
        covered = now if seen_at is None else now - max(0.0, time.time() - seen_at)
        self._seen[step] = max(covered, self._seen.get(step, covered))
        if step not in self._timers:
            self._timers[step] = loop.call_at(self._seen[step] + self._timeout_s, self._due, step)

    def forget(self, step: RunningStep) -> None:
        """``step`` no longer runs here."""
        self._seen.pop(step, None)
        timer = self._timers.pop(step, None)
        if timer is not None:
            timer.cancel()

    def observe(self, env: Envelope) -> None:
        """Fold in one ``fl.status`` envelope: a heartbeat of this party's worker, or a status of
        one of this party's steps (``running`` starts the watch, a final state ends it). A body
        that does not fit its model raises ``pydantic.ValidationError``."""
        if env.type == HEARTBEAT:
            self._heartbeat(env, WorkerHeartbeat.of(env))
        elif env.type == TASK_STATUS:
            self._status(env, TaskStatus.of(env))

    def _heartbeat(self, env: Envelope, beat: WorkerHeartbeat) -> None:
        if env.src != self._me or beat.party != self._me:
            return
        for item in beat.running:
            self.watch(RunningStep(item.job_id, item.task, item.attempt), seen_at=env.ts)

    def _status(self, env: Envelope, status: TaskStatus) -> None:
        if env.src != self._me or env.task is None or status.attempt is None:
            return
        if (status.party or env.src) != self._me:
            return
        step = RunningStep(env.job_id, env.task, status.attempt)
        if status.state == TaskState.RUNNING:
            self.watch(step, seen_at=env.ts)
        elif status.state in TaskState.TERMINAL:
            self.forget(step)

    def _due(self, step: RunningStep) -> None:
        self._timers.pop(step, None)
        seen = self._seen.get(step)
        if seen is None:
            return
        loop = asyncio.get_running_loop()
        silent_s = loop.time() - seen
        if silent_s < self._timeout_s:  # covered since the timer was set: wait for the rest
            self._timers[step] = loop.call_at(seen + self._timeout_s, self._due, step)
            return
        del self._seen[step]
        task = asyncio.create_task(self._lost(step, silent_s), name=f"worker lost {step}")
        self._firing.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._firing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("reporting a lost worker's step: %r", exc, exc_info=exc)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._seen.clear()
        for task in list(self._firing):
            task.cancel()
        await asyncio.gather(*self._firing, return_exceptions=True)


def lost_reason(silent_s: float) -> str:
    return f"worker lost: no heartbeat for {silent_s:.0f} s"


def report_lost(
    session: Session, ctx: protocol.PartyContext, step: RunningStep, silent_s: float
) -> bool:
    """Fail ``step`` on this party if it still runs at that attempt (False: it has moved on).

    The ``failed`` status goes through ``protocol.apply`` like a worker's own (forwarded to the
    peers, retried if the step has retries left) and is published on ``fl.status`` for the
    dashboard; its id is derived from the step, so the consumer skips it when it reads it back.
    The workers are also told to stop that attempt here, should one still run it.
    """
    job = session.get(Job, step.job_id)
    if job is None or job.state not in (JobState.RUNNING, JobState.PAUSED):
        return False
    task = next((t for t in job.tasks if t.step == step.step and t.party_id == ctx.me), None)
    if task is None or task.state != TaskState.RUNNING or task.attempt != step.attempt:
        return False
    reason = lost_reason(silent_s)
    log.warning("job %s: step %s attempt %d: %s", job.id, step.step, step.attempt, reason)
    env = Envelope(
        id=protocol.derived_id("worker-lost", job.id, step.step, ctx.me, str(step.attempt)),
        type=TASK_STATUS,
        job_id=job.id,
        task=step.step,
        src=ctx.me,
        body={
            "party": ctx.me,
            "state": TaskState.FAILED,
            "reason": reason,
            "code": failures.WORKER_LOST,
            "outputs": {},
            "attempt": step.attempt,
            "fault": protocol.PLATFORM,
        },
    )
    protocol.emit(session, topics.STATUS, env)
    # in case the worker only looked dead (cut off from Kafka): its copy must not run on
    stop = Envelope(
        id=protocol.derived_id(env.id, "stop"),
        type="job.stop",
        job_id=job.id,
        task=step.step,
        src=ctx.me,
        dst=ctx.me,
        body={"attempt": step.attempt, "reason": reason},
    )
    protocol.emit(session, topics.CONTROL, stop)
    return protocol.apply(session, ctx, env)


def running_here(sessions: sessionmaker[Session], me: str) -> list[RunningStep]:
    """This party's steps the database says are running (the timers to re-arm at start-up)."""
    with sessions() as session:
        rows = session.execute(
            select(Task.job_id, Task.step, Task.attempt)
            .join(Job, Job.id == Task.job_id)
            .where(
                Task.party_id == me,
                Task.state == TaskState.RUNNING,
                Job.state.in_((JobState.RUNNING, JobState.PAUSED)),
            )
        )
        return [RunningStep(r.job_id, r.step, int(r.attempt)) for r in rows]
