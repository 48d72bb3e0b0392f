"""A job's and its tasks' state changes on this party, and the messages each one causes: the
dashboard's ``job.status``, the peers' ``job.status`` / ``task.status``, ``task.run`` for the
steps that became ready, and commands to this party's workers on fl.control."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from fedcore import paths, topics
from fedcore.envelope import Envelope
from flow_server import disclosure, placement, scheduler, states
from flow_server.models import Job, JobState, Task, TaskState
from flow_server.protocol.context import (
    PartyContext,
    derived_id,
    emit,
    job_member,
    job_parties,
    job_pipeline,
    job_spec,
    step_attempt,
    steps_of,
    task_views,
)

log = logging.getLogger(__name__)


def announce(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """``job.status`` on fl.status for the dashboard: the state and the pipeline's DAG."""
    steps = steps_of(job, ctx)
    emit(
        session,
        topics.STATUS,
        Envelope(
            id=derived_id(cause, job.id, "job.status", job.state),
            type="job.status",
            job_id=job.id,
            src=ctx.me,
            body={
                "state": job.state,
                "initiator": job.initiator,
                "parties": list(job.parties),
                "pipeline": job.pipeline_name,
                "steps": [step.name for step in steps],
                "components": {step.name: step.component for step in steps},
                "depends": {step.name: list(step.deps) for step in steps},
                "reason": job.reason,
            },
        ),
    )


def set_job_state(
    session: Session,
    ctx: PartyContext,
    job: Job,
    state: str,
    *,
    reason: str | None = None,
    cause: str,
) -> None:
    """Move a job to ``state``, announce it, and tell the other parties.

    Every party tells the others each state its job moves to (``job.status`` on fl.out.ctl): that
    is each party's view of the job that ``GET /jobs/{id}`` shows. An ending also settles this
    party's own tasks (see ``_settle``).

    The same state again is a no-op; a move the transition table forbids raises
    ``states.IllegalTransition`` before anything is written.
    """
    if job.state == state:
        return
    move_job(job, state, reason)
    after_job_move(session, ctx, job, cause=cause)


def after_job_move(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    record_view(job, ctx.me, job.state, job.reason)
    announce(session, ctx, job, cause=cause)
    _tell_peers(session, ctx, job, cause=cause)
    if job.state in JobState.TERMINAL:
        _settle(session, ctx, job, cause=cause)


def _tell_peers(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    for party in job_parties(job):
        if party == ctx.me:
            continue
        emit(
            session,
            topics.OUT_CTL,
            Envelope(
                id=derived_id(cause, job.id, "job.status", job.state, party),
                type="job.status",
                job_id=job.id,
                src=ctx.me,
                dst=party,
                body={"state": job.state, "reason": job.reason},
            ),
        )


def move_job(job: Job, state: str, reason: str | None) -> None:
    """The one place a job's state is written (a rerun aside, see ``rerun_job``)."""
    states.check_job_transition(job.id, job.state, state)
    job.state = state
    job.reason = reason


def record_view(job: Job, party: str, state: str, reason: str | None) -> None:
    """Remember ``party``'s last reported state of the job (its view, shown by the API)."""
    member = job_member(job, party)
    if member is not None:
        member.job_state = state
        member.job_reason = reason


def start_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    set_job_state(session, ctx, job, JobState.RUNNING, cause=cause)
    schedule(session, ctx, job, cause=cause)


def schedule(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """End the job if it ended, else dispatch every step of this party that is ready."""
    if job.state != JobState.RUNNING:
        return
    pipeline = job_pipeline(job, ctx.catalog)
    parties = job_parties(job)
    tasks = task_views(job, ctx.me)
    outcome = scheduler.job_outcome(pipeline, parties, tasks)
    if outcome.state != scheduler.RUNNING:
        set_job_state(
            session,
            ctx,
            job,
            outcome.state,
            reason=outcome.reason,
            cause=cause,
        )
        return
    spec = job_spec(job, ctx.me)
    for step in scheduler.ready_steps(pipeline, parties, ctx.me, tasks):
        args = spec.args_for(step, ctx.me)
        try:
            inputs = scheduler.resolve_inputs(step, args, ctx.me, parties, tasks)
        except scheduler.UnresolvedInput as exc:
            set_job_state(
                session,
                ctx,
                job,
                JobState.FAILED,
                reason=f"party {ctx.me}: {exc}",
                cause=cause,
            )
            return
        root = placement.output_root(job, ctx.default_output)
        try:
            # The party id keeps parties that share a filesystem apart; job id and step name
            # come from the initiator (and the root may be a peer's, granted), so the result
            # must stay inside the output root.
            output_dir = paths.join(root, job.id, ctx.me, step.name)
        except paths.PathRefused as exc:
            reason = f"party {ctx.me}: step {step.name}: output {exc}"
            set_job_state(session, ctx, job, JobState.FAILED, reason=reason, cause=cause)
            return
        attempt = step_attempt(job, step.name)
        task = Task(
            step=step.name,
            party_id=ctx.me,
            role=parties[ctx.me],
            state=TaskState.WAITING,
            outputs={},
            attempt=attempt,
        )
        job.tasks.append(task)
        emit(
            session,
            topics.TASKS,
            Envelope(
                id=derived_id(job.id, step.name, ctx.me, "task.run", str(attempt)),
                type="task.run",
                job_id=job.id,
                task=step.name,
                src=ctx.me,
                body={
                    "component": step.component,
                    "role": parties[ctx.me],
                    "party_id": ctx.me,
                    "parties": spec.roles(),
                    "args": args,
                    "inputs": inputs,
                    "output_dir": str(output_dir),
                    "fed_since_ms": job.fed_since_ms,
                    "attempt": attempt,
                },
            ),
        )
        tasks = {**tasks, (step.name, ctx.me): scheduler.TaskView(TaskState.WAITING)}


def forward(session: Session, ctx: PartyContext, job: Job, task: Task, *, cause: str) -> None:
    """Tell every other party of the job this party's task state: no paths, no outputs, and of a
    failure only its code (``flow_server.disclosure``)."""
    for other in job_parties(job):
        if other == ctx.me:
            continue
        emit(
            session,
            topics.OUT_CTL,
            Envelope(
                id=derived_id(cause, "forward", task.step, str(task.attempt), other),
                type="task.status",
                job_id=job.id,
                task=task.step,
                src=ctx.me,
                dst=other,
                body={
                    "party": ctx.me,
                    "state": task.state,
                    "reason": disclosure.task_reason(task, ctx.me),
                    "code": task.code,
                    "attempt": task.attempt,
                },
            ),
        )


def control(
    session: Session,
    ctx: PartyContext,
    job: Job,
    kind: str,
    *,
    cause: str,
    step: str | None = None,
    body: dict[str, Any] | None = None,
) -> None:
    """A command to this party's task_engine workers on fl.control (``job.stop`` / ``pause`` /
    ``resume``; with ``task`` set, only that step's copies)."""
    emit(
        session,
        topics.CONTROL,
        Envelope(
            id=derived_id(cause, job.id, "control", kind, step or ""),
            type=kind,
            job_id=job.id,
            task=step,
            src=ctx.me,
            dst=ctx.me,
            body=body or {},
        ),
    )


def _settle(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """A job ended: this party's tasks still waiting or running are canceled, and killed."""
    active = [t for t in job.tasks if t.party_id == ctx.me and t.state not in TaskState.TERMINAL]
    if not active:
        return
    control(session, ctx, job, "job.stop", cause=cause, body={"reason": job.reason})
    for task in active:
        states.check_task_transition(
            job.id, task.step, task.party_id, task.state, TaskState.CANCELED
        )
        task.state = TaskState.CANCELED
        task.reason = f"job {job.state}" + (f": {job.reason}" if job.reason else "")
        forward(session, ctx, job, task, cause=cause)


def update_task(job: Job, task: Task, state: str, reason: str | None, attempt: int | None) -> bool:
    """The one place a task's state is written; False if the status changes nothing.

    A status of an older attempt, the same state again, or a state the task has already passed
    (a late ``running`` after ``success``) is ignored; a newer attempt starts the task again; any
    other move the table forbids raises ``states.IllegalTransition``.
    """
    new_attempt = attempt is not None and attempt > task.attempt
    if job.state in JobState.TERMINAL and task.state == TaskState.CANCELED and not new_attempt:
        # a task the job's ending canceled, whose step ended on its own meanwhile
        if state != task.state:
            log.info("task %s/%s: %s after the job ended; ignored", job.id, task.step, state)
        return False
    if not new_attempt:
        if attempt is not None and attempt < task.attempt:
            log.info("task %s/%s: status of old attempt %d ignored", job.id, task.step, attempt)
            return False
        if state == task.state or states.is_stale_task_state(task.state, state):
            return False
    states.check_task_transition(
        job.id, task.step, task.party_id, task.state, state, new_attempt=new_attempt
    )
    task.state = state
    task.reason = reason
    if attempt is not None:
        task.attempt = attempt
    return True


def restart_steps(
    session: Session,
    ctx: PartyContext,
    job: Job,
    attempts: dict[str, int],
    *,
    cause: str,
    why: str,
    afresh: bool = True,
) -> None:
    """Forget the tasks of ``attempts``' steps (every party's) and set their new attempts, so
    that ``schedule`` dispatches them again; this party's copies still alive are killed.

    A step restarted ``afresh`` (a rerun) gets its retry budgets back; one restarted after a
    platform fault (``afresh=False``) keeps what it has used of them."""
    for name, attempt in attempts.items():
        for task in [t for t in job.tasks if t.step == name]:
            if task.party_id == ctx.me and task.state not in TaskState.TERMINAL:
                control(
                    session,
                    ctx,
                    job,
                    "job.stop",
                    cause=cause,
                    step=name,
                    body={"attempt": task.attempt, "reason": f"step {why} at attempt {attempt}"},
                )
            job.tasks.remove(task)
    # the deletes first: the new attempts' rows reuse the (job, step, party) key
    session.flush()
    job.step_attempts = {**(job.step_attempts or {}), **attempts}
    if afresh:
        job.step_retries = {k: v for k, v in (job.step_retries or {}).items() if k not in attempts}
        job.platform_retries = {
            k: v for k, v in (job.platform_retries or {}).items() if k not in attempts
        }
