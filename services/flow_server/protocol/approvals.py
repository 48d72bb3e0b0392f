"""A peer's proposal held for this party's operator (``pending_approval``), and the operator's
answer: approve (the grants are checked again, then ``job.accept``), reject (``job.reject`` with
the operator's reason), or no answer until the acceptance deadline (``timeout``).

Every decision is appended to ``flow_server.decisions``: by the policy, the deadline, or the
person whose API token made the request. Other parties see that the job waits on this party:
the move to ``pending_approval`` is sent to them as ``job.status`` like any other state.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server import decisions, states
from flow_server.dsl import DslError, JobSpec, parse_pipeline
from flow_server.models import Job, JobState, now_ms
from flow_server.policy import Verdict, judge
from flow_server.protocol.context import (
    PartyContext,
    derived_id,
    emit,
    job_parties,
    place_outputs,
)
from flow_server.protocol.jobstate import after_job_move, set_job_state

log = logging.getLogger(__name__)


def record_refusal(session: Session, ctx: PartyContext, env: Envelope, exc: DslError) -> None:
    """The policy refused a proposal as it arrived."""
    decisions.record(
        session,
        me=ctx.me,
        job_id=env.job_id,
        initiator=env.src,
        proposal=env.body,
        decision=decisions.REJECTED,
        rule=exc.code,
        code=exc.code,
        decided_by=decisions.POLICY,
        reason=str(exc),
    )


def hold_or_accept(
    session: Session, ctx: PartyContext, job: Job, env: Envelope, verdict: Verdict
) -> bool:
    """True if the policy accepts the proposal now (the caller answers ``job.accept``); False if
    it is held in ``pending_approval`` until this party's operator decides or the deadline."""
    wait = verdict.wait_rule is not None
    decisions.record(
        session,
        me=ctx.me,
        job_id=job.id,
        initiator=job.initiator,
        proposal=env.body,
        decision=decisions.PENDING if wait else decisions.ACCEPTED,
        rule=verdict.rule,
        decided_by=decisions.POLICY,
    )
    if not wait:
        return True
    job.state = JobState.PENDING_APPROVAL  # the job's first state here, not a move
    job.accept_deadline_ms = now_ms() + int(ctx.accept_timeout_s * 1000)
    after_job_move(session, ctx, job, cause=env.id)
    log.info("job %s from %s waits for approval (%s)", job.id, job.initiator, verdict.wait_rule)
    return False


def _proposal(session: Session, job: Job) -> dict[str, Any]:
    row = decisions.latest(session, job.id)
    if row is None:  # every held job has its pending_approval row
        raise DslError("no_proposal", f"job {job.id} has no recorded proposal")
    return decisions.proposal_of(row)


def _tell_initiator(
    session: Session, ctx: PartyContext, job: Job, kind: str, body: dict[str, object], cause: str
) -> None:
    emit(
        session,
        topics.OUT_CTL,
        Envelope(
            id=derived_id(cause, job.id, kind),
            type=kind,
            job_id=job.id,
            src=ctx.me,
            dst=job.initiator,
            body=body,
        ),
    )


def _check_pending(job: Job, new: str) -> None:
    if job.state != JobState.PENDING_APPROVAL:
        raise states.IllegalTransition(f"job {job.id}", job.state, new)


def approve_job(session: Session, ctx: PartyContext, job: Job, *, by: str, cause: str) -> None:
    """The operator approves a held proposal. Its inputs are judged again now: a grant revoked
    or expired meanwhile turns the approval into a refusal."""
    _check_pending(job, JobState.WAITING)
    proposal = _proposal(session, job)
    own = proposal.get("party_args")
    try:
        pipeline = parse_pipeline(job.pipeline_yaml, ctx.catalog)
        parties = job_parties(job)
        spec = JobSpec(parties, dict(job.common_args), {ctx.me: dict(own or {})})
        verdict = judge(
            session, ctx.policy, me=ctx.me, initiator=job.initiator, pipeline=pipeline, spec=spec
        )
    except DslError as exc:
        reason = f"{exc} (checked again at approval)"
        _tell_initiator(session, ctx, job, "job.reject", {"reason": reason}, cause)
        set_job_state(session, ctx, job, JobState.REJECTED, reason=reason, cause=cause)
        decisions.record(
            session,
            me=ctx.me,
            job_id=job.id,
            initiator=job.initiator,
            proposal=proposal,
            decision=decisions.REJECTED,
            rule=f"{exc.code} at approval",
            code=exc.code,
            decided_by=by,
            reason=str(exc),
        )
        return
    job.party_args = verdict.args
    job.output_placement = place_outputs(
        session, ctx, job_args=job.party_args, common_args=job.common_args, initiator=job.initiator
    )
    set_job_state(session, ctx, job, JobState.WAITING, cause=cause)
    _tell_initiator(session, ctx, job, "job.accept", {}, cause)
    used = ", ".join(verdict.grants) or "none needed"
    decisions.record(
        session,
        me=ctx.me,
        job_id=job.id,
        initiator=job.initiator,
        proposal=proposal,
        decision=decisions.APPROVED,
        rule=f"approved by its operator; every input granted (grants: {used})",
        decided_by=by,
    )


def reject_job(
    session: Session, ctx: PartyContext, job: Job, *, by: str, reason: str | None, cause: str
) -> None:
    """The operator rejects a held proposal; the initiator is told this party's reason."""
    _check_pending(job, JobState.REJECTED)
    text = "rejected by its operator" + (f": {reason}" if reason else "")
    _tell_initiator(session, ctx, job, "job.reject", {"reason": text}, cause)
    set_job_state(session, ctx, job, JobState.REJECTED, reason=text, cause=cause)
    decisions.record(
        session,
        me=ctx.me,
        job_id=job.id,
        initiator=job.initiator,
        proposal=_proposal(session, job),
        decision=decisions.REJECTED,
        rule="rejected by its operator",
        decided_by=by,
        reason=reason,
    )


def expire_pending(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """Nobody decided on a held proposal in time: the job ends ``timeout`` here and, through the
    ``job.status`` every state change sends, on the initiator."""
    reason = f"party {ctx.me}'s operator did not decide within {ctx.accept_timeout_s:g} s"
    set_job_state(session, ctx, job, JobState.TIMEOUT, reason=reason, cause=cause)
    decisions.record(
        session,
        me=ctx.me,
        job_id=job.id,
        initiator=job.initiator,
        proposal=_proposal(session, job),
        decision=decisions.EXPIRED,
        rule=f"ACCEPT_TIMEOUT_S={ctx.accept_timeout_s:g}",
        decided_by=decisions.DEADLINE,
        reason=reason,
    )
