"""Lifecycle commands: stop, pause, resume, rerun, delete.

Asked on any party (REST), applied there and sent to every other party as ``job.stop`` /
``job.pause`` / ``job.resume`` / ``job.rerun`` / ``job.delete`` on fl.out.ctl; each party applies
it to its own copy of the job and tells its workers on fl.control. Illegal requests raise
``states.IllegalTransition`` before anything is written. A command received from a peer reaches
its handler only from another party of the job (``senders``), its body parsed (``Command``,
``JobRerun``: attempts 1..1000 of steps the pipeline has).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from fedcore import topics
from fedcore.envelope import Envelope
from fedcore.messages import Command, Empty, JobRerun
from flow_server import scheduler, states
from flow_server.models import Job, JobState
from flow_server.protocol import faults
from flow_server.protocol.context import (
    PartyContext,
    ProtocolError,
    derived_id,
    emit,
    find_job,
    job_parties,
    job_pipeline,
    step_attempt,
    steps_of,
    task_views,
)
from flow_server.protocol.jobstate import (
    after_job_move,
    control,
    restart_steps,
    schedule,
    set_job_state,
)


def _request_peers(
    session: Session, ctx: PartyContext, job: Job, kind: str, body: dict[str, Any], *, cause: str
) -> None:
    for party in job_parties(job):
        if party != ctx.me:
            emit(
                session,
                topics.OUT_CTL,
                Envelope(
                    id=derived_id(cause, job.id, kind, party),
                    type=kind,
                    job_id=job.id,
                    src=ctx.me,
                    dst=party,
                    body=body,
                ),
            )


def stop_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """Cancel the job on every party; running steps are killed."""
    if job.state in JobState.TERMINAL:
        raise states.IllegalTransition(f"job {job.id}", job.state, JobState.CANCELED)
    reason = f"stopped on party {ctx.me}"
    _request_peers(session, ctx, job, "job.stop", {"reason": reason}, cause=cause)
    set_job_state(session, ctx, job, JobState.CANCELED, reason=reason, cause=cause)


def pause_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """Suspend the job's running steps on every party and dispatch nothing until resumed."""
    states.check_job_transition(job.id, job.state, JobState.PAUSED)
    if job.state == JobState.PAUSED:
        return
    _request_peers(session, ctx, job, "job.pause", {}, cause=cause)
    _pause(session, ctx, job, f"paused on party {ctx.me}", cause=cause)


def _pause(session: Session, ctx: PartyContext, job: Job, reason: str, *, cause: str) -> None:
    set_job_state(session, ctx, job, JobState.PAUSED, reason=reason, cause=cause)
    control(session, ctx, job, "job.pause", cause=cause)


def resume_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    if job.state != JobState.PAUSED:
        raise states.IllegalTransition(f"job {job.id} (resume)", job.state, JobState.RUNNING)
    _request_peers(session, ctx, job, "job.resume", {}, cause=cause)
    _resume(session, ctx, job, cause=cause)


def _resume(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    set_job_state(session, ctx, job, JobState.RUNNING, cause=cause)
    control(session, ctx, job, "job.resume", cause=cause)
    schedule(session, ctx, job, cause=cause)


def rerun_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> dict[str, int]:
    """Run the job again from its failed (canceled, timed-out) steps on every party.

    The steps that succeeded on every party keep their outputs; the others and everything
    downstream of them run again at their attempt + 1. Returns those steps' new attempts.
    """
    states.check_job_rerun(job.id, job.state)
    pipeline = job_pipeline(job, ctx.catalog)
    parties = job_parties(job)
    tasks = task_views(job, ctx.me)
    not_done = {s.name for s in pipeline.steps if not scheduler.step_done(s, parties, tasks)}
    attempts = {
        name: max([t.attempt for t in job.tasks if t.step == name] + [step_attempt(job, name)]) + 1
        for name in sorted(scheduler.downstream(pipeline, not_done))
    }
    _request_peers(session, ctx, job, "job.rerun", {"attempts": attempts}, cause=cause)
    _rerun(session, ctx, job, attempts, cause=cause)
    return attempts


def _rerun(
    session: Session, ctx: PartyContext, job: Job, attempts: dict[str, int], *, cause: str
) -> None:
    if job.state in JobState.RERUNNABLE:
        states.check_job_rerun(job.id, job.state)
        job.state = JobState.RUNNING
        job.reason = None
        after_job_move(session, ctx, job, cause=cause)
    elif job.state not in (JobState.RUNNING, JobState.PAUSED):
        raise states.IllegalTransition(f"job {job.id} (rerun)", job.state, JobState.RUNNING)
    restart_steps(session, ctx, job, attempts, cause=cause, why="rerun")
    schedule(session, ctx, job, cause=cause)


def delete_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """Forget an ended job on every party."""
    if job.state not in JobState.TERMINAL:
        what = f"job {job.id} (delete: stop it first)"
        raise states.IllegalTransition(what, job.state, "deleted")
    _request_peers(session, ctx, job, "job.delete", {}, cause=cause)
    session.delete(job)


def on_stop(session: Session, ctx: PartyContext, env: Envelope, body: Command) -> None:
    job = find_job(session, env)
    if job is None or job.state in JobState.TERMINAL:
        return
    reason = body.reason or f"stopped on party {env.src}"
    set_job_state(session, ctx, job, JobState.CANCELED, reason=reason, cause=env.id)


def on_pause(session: Session, ctx: PartyContext, env: Envelope, body: Command) -> None:
    job = find_job(session, env)
    if job is None or job.state != JobState.RUNNING:
        return
    _pause(session, ctx, job, f"paused on party {env.src}", cause=env.id)


def on_resume(session: Session, ctx: PartyContext, env: Envelope, body: Command) -> None:
    job = find_job(session, env)
    if job is None or job.state != JobState.PAUSED:
        return
    _resume(session, ctx, job, cause=env.id)


def on_rerun(session: Session, ctx: PartyContext, env: Envelope, body: JobRerun) -> None:
    job = find_job(session, env)
    if job is None:
        return
    steps = {s.name for s in steps_of(job, ctx)}
    unknown = sorted(set(body.attempts) - steps)
    if unknown:
        raise ProtocolError(f"job.rerun for {job.id}: no step {unknown[0]!r} in its pipeline")
    if body.fault == faults.PLATFORM:
        faults.on_platform_rerun(session, ctx, job, dict(body.attempts), src=env.src, cause=env.id)
    else:
        _rerun(session, ctx, job, dict(body.attempts), cause=env.id)


def on_delete(session: Session, ctx: PartyContext, env: Envelope, body: Empty) -> None:
    job = find_job(session, env)
    if job is None:
        return
    if job.state not in JobState.TERMINAL:
        reason = f"deleted on party {env.src}"
        set_job_state(session, ctx, job, JobState.CANCELED, reason=reason, cause=env.id)
    session.delete(job)
