"""Proposing a job and answering a proposal: the initiator's submission, ``job.propose``,
``job.accept`` / ``job.reject``, ``job.start`` and the initiator's acceptance deadline.

A proposal reaches ``on_propose`` only from a known peer that names itself the initiator
(``senders``) and within ``fedcore.messages.JobPropose``'s bounds; what this party then finds
wrong with it (its pipeline, versions, parties, args, data) is a ``DslError``, answered as a
``job.reject`` with that reason. Checks of a proposal's content are small functions called from
``_proposed_job``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from fedcore import topics
from fedcore.envelope import Envelope, new_id
from fedcore.messages import Empty, JobPropose, JobReject
from fedcore.version import TESSERA_VERSION, compatible
from flow_server import floors, references
from flow_server.catalog import Catalog
from flow_server.dsl import (
    ArgRef,
    DslError,
    JobSpec,
    Pipeline,
    check_job,
    parse_job,
    parse_party_specs,
    parse_pipeline,
    takes_part,
)
from flow_server.models import Answer, Job, JobParty, JobState, now_ms
from flow_server.models import Pipeline as PipelineRow
from flow_server.policy import Verdict, judge
from flow_server.protocol import approvals
from flow_server.protocol.context import (
    PartyContext,
    ProtocolError,
    derived_id,
    emit,
    find_job,
    job_member,
    place_outputs,
)
from flow_server.protocol.jobstate import announce, move_job, set_job_state, start_job

log = logging.getLogger(__name__)


def _check_local_data(spec: JobSpec, pipeline: Pipeline, me: str) -> None:
    """The files this party's steps read from its own args exist (URLs are not checked).

    For a peer's proposal this runs only on the paths its grants admitted, so the answer is no
    oracle of the rest of this party's filesystem."""
    role = spec.parties[me]
    for step in pipeline.steps:
        if not takes_part(step, role):
            continue
        args = spec.args_for(step, me)
        for name, ref in step.inputs.items():
            if not isinstance(ref, ArgRef):
                continue
            value = str(args[ref.arg])
            if "://" not in value and not _exists(value):
                raise DslError(
                    "data_not_found",
                    f"step '{step.name}' reads input '{name}' from {value}, which does not exist "
                    f"on party {me}",
                    f"parties-args.{me}.{ref.arg}",
                )


def _exists(path: str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):  # a name too long for the filesystem, a NUL
        return False


# refusals that would tell the proposer something about this party's files: only their code
_LOCAL_CODES = frozenset({"data_not_found"})


def _public_rejection(exc: DslError) -> str:
    """What the initiator is told of a refusal: the rule's message, or for a refusal about this
    party's files (a granted table's local path) only its code; the full reason stays here."""
    if exc.code in _LOCAL_CODES:
        return f"{exc.code}" + (f" at {exc.where}" if exc.where else "")
    return str(exc)


def submit_job(
    session: Session, ctx: PartyContext, *, pipeline_row: PipelineRow, job_yaml: bytes | str
) -> Job:
    """Validate job.yaml, create the job as its initiator and propose it to the other parties."""
    pipeline = parse_pipeline(pipeline_row.yaml_text, ctx.catalog)
    spec = parse_job(job_yaml)
    check_job(spec, pipeline, me=ctx.me, peers=ctx.peers, check_args_of=list(spec.parties))
    spec.party_args[ctx.me] = references.resolve_args(session, spec.party_args[ctx.me], me=ctx.me)
    # this party's own floors hold for its own jobs too (a peer's proposal: policy.judge)
    floors.check_job(
        spec, pipeline, me=ctx.me, party_floors=ctx.policy.floors, images=ctx.policy.images
    )
    _check_local_data(spec, pipeline, ctx.me)
    job = Job(
        id=new_id(),
        pipeline_id=pipeline_row.id,
        pipeline_name=pipeline.name,
        pipeline_yaml=pipeline_row.yaml_text,
        initiator=ctx.me,
        state=JobState.WAITING,
        parties=spec.party_specs,
        common_args=spec.common_args,
        party_args=spec.party_args[ctx.me],
        fed_since_ms=now_ms(),
        output_placement=place_outputs(
            session,
            ctx,
            job_args=spec.party_args[ctx.me],
            initiator=ctx.me,
            common_args=spec.common_args,
        ),
    )
    if len(spec.parties) > 1:
        job.accept_deadline_ms = now_ms() + int(ctx.accept_timeout_s * 1000)
    job.members = [
        JobParty(
            party_id=p,
            role=r,
            position=i,
            answer=Answer.ACCEPTED if p == ctx.me else Answer.PENDING,
        )
        for i, (p, r) in enumerate(spec.parties.items())
    ]
    session.add(job)
    cause = f"submit/{job.id}"
    announce(session, ctx, job, cause=cause)
    others = [p for p in spec.parties if p != ctx.me]
    for party in others:
        emit(
            session,
            topics.OUT_CTL,
            Envelope(
                type="job.propose",
                job_id=job.id,
                src=ctx.me,
                dst=party,
                body={
                    "pipeline": pipeline_row.yaml_text,
                    "pipeline_name": pipeline.name,
                    "parties": spec.party_specs,
                    "common_args": spec.common_args,
                    "party_args": spec.party_args[party],
                    "initiator": ctx.me,
                    "tessera_version": TESSERA_VERSION,
                    "component_versions": {
                        s.component: ctx.catalog[s.component].version for s in pipeline.steps
                    },
                },
            ),
        )
    if not others:
        start_job(session, ctx, job, cause=cause)
    return job


def _check_versions(body: JobPropose, pipeline: Pipeline, catalog: Catalog) -> None:
    """Refuse a proposal from a Tessera release, or for component versions, that differ."""
    theirs = body.tessera_version
    if theirs is None:
        raise DslError("incompatible_version", "the proposal does not say its Tessera version")
    try:
        ok = compatible(TESSERA_VERSION, theirs)
    except ValueError as exc:
        raise DslError("incompatible_version", str(exc)) from exc
    if not ok:
        raise DslError(
            "incompatible_version",
            f"the initiator runs Tessera {theirs}, this party {TESSERA_VERSION}",
        )
    versions = body.component_versions
    for name in sorted({s.component for s in pipeline.steps}):
        if versions.get(name) != catalog[name].version:
            raise DslError(
                "incompatible_version",
                f"component {name}: the initiator runs version {versions.get(name)}, "
                f"this party {catalog[name].version}",
            )


def on_propose(session: Session, ctx: PartyContext, env: Envelope, body: JobPropose) -> None:
    """A peer proposes a job (``senders`` checked that it is a known peer naming itself the
    initiator): check it, then accept, refuse, or hold it for this party's operator.

    Every outcome is recorded (``flow_server.decisions``); the inputs it names are admitted only
    through this party's grants to the initiator (``flow_server.policy``).
    """
    if session.get(Job, env.job_id) is not None:
        log.warning("job.propose %s: job %s exists already; ignored", env.id, env.job_id)
        return
    job = Job(
        id=env.job_id,
        pipeline_id=None,
        pipeline_name=body.pipeline_name,
        pipeline_yaml=body.pipeline,
        initiator=env.src,
        state=JobState.WAITING,
        parties=list(body.parties),
        common_args={},
        party_args={},
        fed_since_ms=now_ms(),
    )
    session.add(job)
    try:
        pipeline, spec, verdict = _proposed_job(session, ctx, env, body)
    except DslError as exc:
        reason = str(exc)
        move_job(job, JobState.REJECTED, reason)
        announce(session, ctx, job, cause=env.id)
        _answer(session, ctx, env, "job.reject", {"reason": _public_rejection(exc)})
        approvals.record_refusal(session, ctx, env, exc)
        log.info("rejected job %s from %s: %s", env.job_id, env.src, reason)
        return
    job.pipeline_name = pipeline.name
    job.common_args = spec.common_args
    job.party_args = spec.party_args[ctx.me]
    job.output_placement = place_outputs(
        session, ctx, job_args=job.party_args, initiator=env.src, common_args=job.common_args
    )
    job.members = [
        JobParty(
            party_id=p,
            role=r,
            position=i,
            answer=Answer.ACCEPTED if p in (ctx.me, env.src) else Answer.PENDING,
        )
        for i, (p, r) in enumerate(spec.parties.items())
    ]
    if approvals.hold_or_accept(session, ctx, job, env, verdict):
        announce(session, ctx, job, cause=env.id)
        _answer(session, ctx, env, "job.accept", {})


def _proposed_job(
    session: Session, ctx: PartyContext, env: Envelope, body: JobPropose
) -> tuple[Pipeline, JobSpec, Verdict]:
    """The proposal's pipeline and job as this party would run them, and the policy's verdict;
    ``DslError`` (the reason of the rejection) if this party cannot take part."""
    pipeline = parse_pipeline(body.pipeline, ctx.catalog)
    _check_versions(body, pipeline, ctx.catalog)
    parties = parse_party_specs(list(body.parties))
    common = dict(body.common_args)
    spec = JobSpec(parties, common, {ctx.me: dict(body.party_args)} if ctx.me in parties else {})
    if env.src not in parties:
        raise DslError("bad_proposal", f"the initiator {env.src} is not a party of the job")
    check_job(spec, pipeline, me=ctx.me, check_args_of=[ctx.me])
    verdict = judge(session, ctx.policy, me=ctx.me, initiator=env.src, pipeline=pipeline, spec=spec)
    spec = JobSpec(parties, common, {ctx.me: verdict.args})
    # only inside what is granted: whether a granted file exists is no secret from the peer
    _check_local_data(spec, pipeline, ctx.me)
    return pipeline, spec, verdict


def _answer(
    session: Session, ctx: PartyContext, env: Envelope, kind: str, body: dict[str, Any]
) -> None:
    emit(
        session,
        topics.OUT_CTL,
        Envelope(
            id=derived_id(env.id, kind),
            type=kind,
            job_id=env.job_id,
            src=ctx.me,
            dst=env.src,
            body=body,
        ),
    )


def on_accept(session: Session, ctx: PartyContext, env: Envelope, body: Empty) -> None:
    job = find_job(session, env)
    if job is None or job.initiator != ctx.me or job.state != JobState.WAITING:
        return
    member = job_member(job, env.src)
    if member is None:
        raise ProtocolError(f"job.accept from {env.src}, not a party of job {job.id}")
    member.answer = Answer.ACCEPTED
    if any(m.answer != Answer.ACCEPTED for m in job.members):
        return
    for m in job.members:
        if m.party_id != ctx.me:
            emit(
                session,
                topics.OUT_CTL,
                Envelope(
                    id=derived_id(env.id, "job.start", m.party_id),
                    type="job.start",
                    job_id=job.id,
                    src=ctx.me,
                    dst=m.party_id,
                ),
            )
    start_job(session, ctx, job, cause=env.id)


def on_reject(session: Session, ctx: PartyContext, env: Envelope, body: JobReject) -> None:
    job = find_job(session, env)
    if job is None or job.initiator != ctx.me or job.state != JobState.WAITING:
        return
    reason = body.reason or "no reason given"
    member = job_member(job, env.src)
    if member is None:
        raise ProtocolError(f"job.reject from {env.src}, not a party of job {job.id}")
    member.answer = Answer.REJECTED
    member.reason = reason
    set_job_state(
        session,
        ctx,
        job,
        JobState.REJECTED,
        reason=f"party {env.src} rejected the job: {reason}",
        cause=env.id,
    )


def on_start(session: Session, ctx: PartyContext, env: Envelope, body: Empty) -> None:
    job = find_job(session, env)
    if job is None or job.state != JobState.WAITING:
        return
    if env.src != job.initiator:
        raise ProtocolError(f"job.start for {job.id} from {env.src}, not its initiator")
    for m in job.members:
        m.answer = Answer.ACCEPTED
    start_job(session, ctx, job, cause=env.id)


def expire_acceptance(
    session: Session, ctx: PartyContext, job_id: str, *, now: int | None = None
) -> bool:
    """End a job still waiting for answers at its acceptance deadline (``timeout``, naming the
    parties that did not answer) — on its initiator, or on a party that held it for its operator;
    False if it has moved on, or its deadline is still ahead."""
    job = session.get(Job, job_id)
    if (
        job is None
        or job.accept_deadline_ms is None
        or (now if now is not None else now_ms()) < job.accept_deadline_ms
    ):
        return False
    cause = f"accept-timeout/{job.id}"
    if job.state == JobState.PENDING_APPROVAL:
        approvals.expire_pending(session, ctx, job, cause=cause)
        return True
    if job.state != JobState.WAITING or job.initiator != ctx.me:
        return False
    pending = [m.party_id for m in job.members if m.answer == Answer.PENDING]
    who = ("party " if len(pending) == 1 else "parties ") + ", ".join(pending)
    reason = f"no answer to the proposal from {who} within {ctx.accept_timeout_s:g} s"
    set_job_state(session, ctx, job, JobState.TIMEOUT, reason=reason, cause=cause)
    return True


def waiting_for_answers(
    sessions: sessionmaker[Session], ctx: PartyContext
) -> list[tuple[str, int]]:
    """(job id, deadline) of every job this party initiated that still waits for answers, and of
    every proposal it holds for its operator."""
    with sessions() as session:
        rows = session.execute(
            select(Job.id, Job.accept_deadline_ms).where(
                or_(
                    (Job.state == JobState.WAITING) & (Job.initiator == ctx.me),
                    Job.state == JobState.PENDING_APPROVAL,
                ),
                Job.accept_deadline_ms.is_not(None),
            )
        )
        return [(r.id, int(r.accept_deadline_ms)) for r in rows]
