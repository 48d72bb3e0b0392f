"""Task and job states reported by this party's workers and by the other parties: applied to
this party's copy of the job, forwarded, retried, and scheduled on. A status comes only from
the party it is about (``senders``), as a ``TaskStatus`` / ``JobStatus`` model."""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from fedcore.envelope import Envelope
from fedcore.messages import JobStatus, TaskStatus
from flow_server import disclosure, models_registry
from flow_server.models import Job, JobState, Task, TaskState
from flow_server.protocol.context import (
    PartyContext,
    ProtocolError,
    auto_retries,
    find_job,
    job_parties,
    step_attempt,
    steps_of,
)
from flow_server.protocol.faults import PLATFORM, retry_platform_fault
from flow_server.protocol.jobstate import (
    forward,
    record_view,
    restart_steps,
    schedule,
    set_job_state,
    update_task,
)

log = logging.getLogger(__name__)


def on_job_status(session: Session, ctx: PartyContext, env: Envelope, body: JobStatus) -> None:
    """Another party's view of the job; an ending (failed, rejected, canceled, timeout) ends it
    here too.

    A peer's other states are recorded as its view only. An ending about a job that has already
    ended here is ignored: both parties may end it on their own, from the same task failure. An
    ending the table forbids (``rejected`` for a running job) raises
    ``states.IllegalTransition``.
    """
    job = find_job(session, env)
    if job is None:
        return
    state = body.state
    record_view(job, env.src, state, body.reason)
    if state not in JobState.TERMINAL or state == JobState.SUCCESS:
        return
    if job.state in JobState.TERMINAL:
        if job.state != state:
            log.info(
                "job.status %s: job %s is %s here already; %s from %s ignored",
                env.id,
                job.id,
                job.state,
                state,
                env.src,
            )
        return
    set_job_state(session, ctx, job, state, reason=body.reason, cause=env.id)


def on_task_status(session: Session, ctx: PartyContext, env: Envelope, body: TaskStatus) -> None:
    """A task's state: this party's (from its task_engine) or another party's (forwarded); the
    sender is the party the task runs on (``senders``)."""
    job = find_job(session, env)
    if job is None:
        return
    step = env.task
    state = body.state
    party = env.src
    parties = job_parties(job)
    if step is None or step not in {s.name for s in steps_of(job, ctx)}:
        raise ProtocolError(f"task.status for {job.id}: unknown step {step!r}")
    reason = body.reason
    outputs = body.outputs
    attempt = body.attempt
    current = step_attempt(job, step)
    if attempt is not None and attempt < current:
        # a retried or rerun step's old attempt (e.g. the copy killed for the retry)
        log.info("task %s/%s on %s: status of old attempt %d ignored", job.id, step, party, attempt)
        return
    if (
        party == ctx.me
        and state == TaskState.FAILED
        and _platform_retried(session, ctx, job, env, body)
    ):
        return

    task = next((t for t in job.tasks if t.step == step and t.party_id == party), None)
    if task is None:
        task = Task(
            step=step,
            party_id=party,
            role=parties[party],
            state=TaskState.WAITING,
            outputs={},
            attempt=attempt or current,
        )
        job.tasks.append(task)
    changed = update_task(job, task, state, reason, attempt)
    if changed:
        task.code = disclosure.task_code(state, body.code)
    if changed and party == ctx.me:
        task.outputs = dict(outputs)
        if state == TaskState.SUCCESS:
            models_registry.on_task_success(session, job=job, task=task, catalog=ctx.catalog)
    if party == ctx.me:
        forward(session, ctx, job, task, cause=env.id)
    if (
        task.state == TaskState.FAILED
        and task.attempt == step_attempt(job, step)
        and job.state in (JobState.RUNNING, JobState.PAUSED)
    ):
        _maybe_retry(session, ctx, job, step, cause=env.id)
    schedule(session, ctx, job, cause=env.id)


def _platform_retried(
    session: Session, ctx: PartyContext, job: Job, env: Envelope, body: TaskStatus
) -> bool:
    """A failure of this party's step that its platform caused, rerun instead of applied."""
    if body.fault != PLATFORM:
        return False
    step = str(env.task)
    attempt = body.attempt or step_attempt(job, step)
    return retry_platform_fault(session, ctx, job, step, attempt, body.reason, cause=env.id)


def _maybe_retry(session: Session, ctx: PartyContext, job: Job, step: str, *, cause: str) -> None:
    """Run a failed step again at attempt + 1 on all its parties, if it has retries left.

    Every party of the step sees the same failure (its own or forwarded) and decides the same
    way, so they all start the new attempt together; each kills its own copy of the old attempt.
    """
    pipeline_step = next((s for s in steps_of(job, ctx) if s.name == step), None)
    if pipeline_step is None:
        return
    used = int((job.step_retries or {}).get(step, 0))
    if used >= auto_retries(job, pipeline_step):
        return
    attempt = step_attempt(job, step) + 1
    log.info("job %s: retrying step %s (attempt %d, retry %d)", job.id, step, attempt, used + 1)
    restart_steps(session, ctx, job, {step: attempt}, cause=cause, why="retried", afresh=False)
    job.step_retries = {**(job.step_retries or {}), step: used + 1}
