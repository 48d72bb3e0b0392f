"""Platform faults: a step of this party lost to its platform, not to its own error.

A worker that stopped heartbeating (``flow_server.heartbeats``), a step pod evicted or a node
lost (``task_engine.kubernetes``) reach the flow_server as a ``failed`` status of this party's
step with ``fault: "platform"``. While the step has platform retries left — this party's own
``PLATFORM_RETRIES`` per step, counted in ``Job.platform_retries`` — the step runs again at
attempt + 1 on every party of the job, apart from (and without using) its ``auto-retries``.

Only the faulting party knows of the fault and its budget, so it decides alone, and it must not
forward the failure: a peer would end the job on it before any retry reached it. It restarts
the step here and sends every peer ``job.rerun`` with the step's new attempt and
``fault: "platform"``; each peer kills its copy of the old attempt and runs the new one, keeping
its own retry counts (``on_platform_rerun``). Statuses of the old attempt arriving later are
ignored as an older attempt's. With the budget spent, the failure is applied and forwarded like
any other, and the job fails unless ``auto-retries`` takes over.
"""

from __future__ import annotations

import logging
from typing import Final

from sqlalchemy.orm import Session

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server.models import Job, JobState, TaskState
from flow_server.protocol.context import (
    PartyContext,
    derived_id,
    emit,
    job_parties,
    step_attempt,
)
from flow_server.protocol.jobstate import restart_steps, schedule

log = logging.getLogger(__name__)

PLATFORM: Final = "platform"


def retry_platform_fault(
    session: Session,
    ctx: PartyContext,
    job: Job,
    step: str,
    attempt: int,
    reason: str | None,
    *,
    cause: str,
) -> bool:
    """Rerun ``step`` at ``attempt`` + 1 on every party after a platform fault of this party's
    copy; False (nothing done) if that copy no longer runs at ``attempt``, or the budget is
    spent."""
    if job.state not in (JobState.RUNNING, JobState.PAUSED) or attempt != step_attempt(job, step):
        return False
    task = next((t for t in job.tasks if t.step == step and t.party_id == ctx.me), None)
    if task is None or task.state in TaskState.TERMINAL or task.attempt != attempt:
        return False
    used = int((job.platform_retries or {}).get(step, 0))
    if used >= ctx.platform_retries:
        return False
    new = attempt + 1
    log.warning(
        "job %s: step %s attempt %d: %s; rerun at attempt %d (platform retry %d of %d)",
        job.id,
        step,
        attempt,
        reason or "platform fault",
        new,
        used + 1,
        ctx.platform_retries,
    )
    restart_steps(
        session,
        ctx,
        job,
        {step: new},
        cause=cause,
        why="retried after a platform fault",
        afresh=False,
    )
    job.platform_retries = {**(job.platform_retries or {}), step: used + 1}
    for party in job_parties(job):
        if party != ctx.me:
            emit(
                session,
                topics.OUT_CTL,
                Envelope(
                    id=derived_id(cause, job.id, "job.rerun", PLATFORM, party),
                    type="job.rerun",
                    job_id=job.id,
                    src=ctx.me,
                    dst=party,
                    body={"attempts": {step: new}, "fault": PLATFORM},
                ),
            )
    schedule(session, ctx, job, cause=cause)
    return True


def on_platform_rerun(
    session: Session, ctx: PartyContext, job: Job, attempts: dict[str, int], *, src: str, cause: str
) -> None:
    """A peer restarted steps after a platform fault of its own: run their new attempts here.

    Only a running (or paused) job follows; one that has ended here stays ended (the peer hears
    of it from this party's ``job.status``). An attempt not past this party's is a replay."""
    if job.state not in (JobState.RUNNING, JobState.PAUSED):
        log.info("job %s is %s here: platform rerun from %s ignored", job.id, job.state, src)
        return
    newer = {step: a for step, a in attempts.items() if a > step_attempt(job, step)}
    if not newer:
        return
    log.info("job %s: party %s reruns %s after a platform fault", job.id, src, newer)
    restart_steps(
        session, ctx, job, newer, cause=cause, why="retried after a platform fault", afresh=False
    )
    schedule(session, ctx, job, cause=cause)
