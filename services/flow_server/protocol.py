"""The cross-party job protocol and the scheduler's side effects, one transaction per event.

Who sees what: a proposed-to party receives the pipeline, the parties with their roles, the common
args and only its own ``parties-args``; parties exchange task *states* and reasons, never paths
or data. Every function here runs inside a caller's transaction and announces what it changed by
writing envelopes to the outbox table (published after the commit), so a state change and its
messages are never separated. Envelopes produced while handling an event get ids derived from that
event, so re-applying it after a crash reproduces the same ids and receivers de-duplicate them.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from fedcore import topics
from fedcore.envelope import Envelope, new_id
from fedcore.version import TESSERA_VERSION, compatible
from flow_server import models_registry, references, scheduler, states
from flow_server.catalog import Catalog
from flow_server.dsl import (
    ArgRef,
    DslError,
    JobSpec,
    Pipeline,
    Step,
    check_job,
    parse_job,
    parse_party_specs,
    parse_pipeline,
    takes_part,
)
from flow_server.models import (
    Answer,
    Job,
    JobParty,
    JobState,
    OutboxRecord,
    ProcessedMessage,
    Task,
    TaskState,
    now_ms,
)
from flow_server.models import Pipeline as PipelineRow

log = logging.getLogger(__name__)

_ID_NAMESPACE = uuid.UUID("6c1f0f3e-5d0a-4a35-9a55-3f0c8e9b7a21")


class ProtocolError(ValueError):
    """A received envelope cannot be applied (malformed, or makes no sense for its job)."""


@dataclass(frozen=True)
class PartyContext:
    """What the protocol needs to know about this party."""

    me: str
    peers: frozenset[str]
    catalog: Catalog
    default_output: Path  # used when a party gives no `output` argument
    # how long the initiator waits for every party's answer to a proposal
    accept_timeout_s: float = 60.0


def derived_id(*parts: str) -> str:
    return uuid.uuid5(_ID_NAMESPACE, "/".join(parts)).hex


def emit(session: Session, topic: str, env: Envelope) -> None:
    session.add(OutboxRecord(topic=topic, payload=env.to_bytes()))


# --- reading a job back ----------------------------------------------------------------------


def job_parties(job: Job) -> dict[str, str]:
    return parse_party_specs(job.parties)


def job_pipeline(job: Job, catalog: Catalog) -> Pipeline:
    return parse_pipeline(job.pipeline_yaml, catalog)


def job_spec(job: Job, me: str) -> JobSpec:
    return JobSpec(job_parties(job), dict(job.common_args), {me: dict(job.party_args)})


def step_attempt(job: Job, step: str) -> int:
    """The attempt ``step`` runs at now, the same on every party (1 until a retry or rerun)."""
    return int((job.step_attempts or {}).get(step, 1))


def auto_retries(job: Job, step: Step) -> int:
    """``auto-retries`` of a step: from the pipeline's step args or the job's common args (never
    one party's own args, since every party of the step must decide the same)."""
    value = job.common_args.get("auto-retries", step.args.get("auto-retries", 0))
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def task_views(job: Job) -> dict[tuple[str, str], scheduler.TaskView]:
    return {
        (t.step, t.party_id): scheduler.TaskView(t.state, t.reason, dict(t.outputs))
        for t in job.tasks
    }


def _check_local_data(spec: JobSpec, pipeline: Pipeline, me: str) -> None:
    """The files this party's steps read from its own args exist (URLs are not checked)."""
    role = spec.parties[me]
    for step in pipeline.steps:
        if not takes_part(step, role):
            continue
        args = spec.args_for(step, me)
        for name, ref in step.inputs.items():
            if not isinstance(ref, ArgRef):
                continue
            value = str(args[ref.arg])
            if "://" not in value and not Path(value).exists():
                raise DslError(
                    "data_not_found",
                    f"step '{step.name}' reads input '{name}' from {value}, which does not exist "
                    f"on party {me}",
                    f"parties-args.{me}.{ref.arg}",
                )


# --- job state changes -----------------------------------------------------------------------


def _announce(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    """``job.status`` on fl.status for the dashboard: the state and the pipeline's DAG."""
    steps = _steps_of(job, ctx)
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


def _steps_of(job: Job, ctx: PartyContext) -> tuple[Step, ...]:
    try:
        return job_pipeline(job, ctx.catalog).steps
    except DslError:
        return ()


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
    _move_job(job, state, reason)
    _after_job_move(session, ctx, job, cause=cause)


def _after_job_move(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    _record_view(job, ctx.me, job.state, job.reason)
    _announce(session, ctx, job, cause=cause)
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


def _move_job(job: Job, state: str, reason: str | None) -> None:
    """The one place a job's state is written (a rerun aside, see ``rerun_job``)."""
    states.check_job_transition(job.id, job.state, state)
    job.state = state
    job.reason = reason


def _record_view(job: Job, party: str, state: str, reason: str | None) -> None:
    """Remember ``party``'s last reported state of the job (its view, shown by the API)."""
    member = _member(job, party)
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
    tasks = task_views(job)
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
        root = str(args.get("output") or ctx.default_output)
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
                    # The party id keeps parties that share a filesystem apart.
                    "output_dir": f"{root.rstrip('/')}/{job.id}/{ctx.me}/{step.name}",
                    "fed_since_ms": job.fed_since_ms,
                    "attempt": attempt,
                },
            ),
        )
        tasks = {**tasks, (step.name, ctx.me): scheduler.TaskView(TaskState.WAITING)}


# --- the initiator: a new job from the REST API ----------------------------------------------


def submit_job(
    session: Session, ctx: PartyContext, *, pipeline_row: PipelineRow, job_yaml: bytes | str
) -> Job:
    """Validate job.yaml, create the job as its initiator and propose it to the other parties."""
    pipeline = parse_pipeline(pipeline_row.yaml_text, ctx.catalog)
    spec = parse_job(job_yaml)
    check_job(spec, pipeline, me=ctx.me, peers=ctx.peers, check_args_of=list(spec.parties))
    spec.party_args[ctx.me] = references.resolve_args(session, spec.party_args[ctx.me], me=ctx.me)
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
    _announce(session, ctx, job, cause=cause)
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


# --- consumed events -------------------------------------------------------------------------


def _check_versions(body: dict[str, Any], pipeline: Pipeline, catalog: Catalog) -> None:
    """Refuse a proposal from a Tessera release, or for component versions, that differ."""
    theirs = body.get("tessera_version")
    if not isinstance(theirs, str):
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
    versions = body.get("component_versions")
    if not isinstance(versions, dict):
        raise DslError("incompatible_version", "the proposal does not say its component versions")
    for name in sorted({s.component for s in pipeline.steps}):
        if str(versions.get(name)) != catalog[name].version:
            raise DslError(
                "incompatible_version",
                f"component {name}: the initiator runs version {versions.get(name)}, "
                f"this party {catalog[name].version}",
            )


def _body(env: Envelope, key: str, kind: type, *, required: bool = True) -> Any:
    value = env.body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise ProtocolError(f"{env.type} {env.id}: body field '{key}' must be a {kind.__name__}")
    return value


def apply(session: Session, ctx: PartyContext, env: Envelope) -> bool:
    """Apply one consumed envelope; False if it was skipped (seen before, or not for us)."""
    if session.get(ProcessedMessage, env.id) is not None:
        return False
    session.add(ProcessedMessage(id=env.id))
    if env.dst is not None and env.dst != ctx.me:
        log.warning("skipping %s %s addressed to party %s", env.type, env.id, env.dst)
        return False
    handler = _HANDLERS.get(env.type)
    if handler is None:
        return False
    if env.type == "job.status" and env.src == ctx.me:
        return False  # our own announcement on fl.status
    handler(session, ctx, env)
    return True


def _job(session: Session, env: Envelope) -> Job | None:
    job = session.get(Job, env.job_id)
    if job is None:
        log.warning("%s %s from %s: unknown job %s", env.type, env.id, env.src, env.job_id)
    return job


def on_propose(session: Session, ctx: PartyContext, env: Envelope) -> None:
    if session.get(Job, env.job_id) is not None:
        log.warning("job.propose %s: job %s exists already; ignored", env.id, env.job_id)
        return
    initiator = env.src
    text = env.body.get("pipeline")
    raw_parties = env.body.get("parties")
    job = Job(
        id=env.job_id,
        pipeline_id=None,
        pipeline_name=str(env.body.get("pipeline_name") or ""),
        pipeline_yaml=text if isinstance(text, str) else "",
        initiator=initiator,
        state=JobState.WAITING,
        parties=[p for p in raw_parties if isinstance(p, str)]
        if isinstance(raw_parties, list)
        else [],
        common_args={},
        party_args={},
        fed_since_ms=now_ms(),
    )
    session.add(job)
    try:
        if initiator not in ctx.peers:
            raise DslError("unknown_initiator", f"party {initiator} is not a known peer")
        if env.body.get("initiator", initiator) != initiator:
            raise DslError("bad_proposal", "the proposal's initiator is not its sender")
        if not isinstance(text, str):
            raise DslError("bad_proposal", "the proposal carries no pipeline text")
        pipeline = parse_pipeline(text, ctx.catalog)
        _check_versions(env.body, pipeline, ctx.catalog)
        parties = parse_party_specs(raw_parties)
        common = env.body.get("common_args") or {}
        own = env.body.get("party_args") or {}
        if not isinstance(common, dict) or not isinstance(own, dict):
            raise DslError("bad_proposal", "common_args and party_args must be mappings")
        own = references.resolve_args(session, own, me=ctx.me)
        spec = JobSpec(parties, common, {ctx.me: own} if ctx.me in parties else {})
        if initiator not in parties:
            raise DslError("bad_proposal", f"the initiator {initiator} is not a party of the job")
        check_job(spec, pipeline, me=ctx.me, check_args_of=[ctx.me])
        _check_local_data(spec, pipeline, ctx.me)
    except DslError as exc:
        reason = str(exc)
        _move_job(job, JobState.REJECTED, reason)
        _announce(session, ctx, job, cause=env.id)
        _answer(session, ctx, env, "job.reject", {"reason": reason})
        log.info("rejected job %s from %s: %s", env.job_id, initiator, reason)
        return
    job.pipeline_name = pipeline.name
    job.common_args = common
    job.party_args = own
    job.members = [
        JobParty(
            party_id=p,
            role=r,
            position=i,
            answer=Answer.ACCEPTED if p in (ctx.me, initiator) else Answer.PENDING,
        )
        for i, (p, r) in enumerate(parties.items())
    ]
    _announce(session, ctx, job, cause=env.id)
    _answer(session, ctx, env, "job.accept", {})


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


def _member(job: Job, party: str) -> JobParty | None:
    return next((m for m in job.members if m.party_id == party), None)


def on_accept(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _job(session, env)
    if job is None or job.initiator != ctx.me or job.state != JobState.WAITING:
        return
    member = _member(job, env.src)
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


def on_reject(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _job(session, env)
    if job is None or job.initiator != ctx.me or job.state != JobState.WAITING:
        return
    reason = _body(env, "reason", str, required=False) or "no reason given"
    member = _member(job, env.src)
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


def on_start(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _job(session, env)
    if job is None or job.state != JobState.WAITING:
        return
    if env.src != job.initiator:
        raise ProtocolError(f"job.start for {job.id} from {env.src}, not its initiator")
    for m in job.members:
        m.answer = Answer.ACCEPTED
    start_job(session, ctx, job, cause=env.id)


def on_job_status(session: Session, ctx: PartyContext, env: Envelope) -> None:
    """Another party ended the job (failed, rejected, canceled, timeout).

    A peer's other states are for dashboards and ignored here. An ending about a job that has
    already ended here is ignored too: both parties may end it on their own, from the same task
    failure. An ending the table forbids (``rejected`` for a running job) raises
    ``states.IllegalTransition``.
    """
    job = _job(session, env)
    state = _body(env, "state", str)
    if job is None:
        return
    if env.src in job_parties(job) and state in JobState.ALL:
        _record_view(job, env.src, state, _body(env, "reason", str, required=False))
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
    if env.src not in job_parties(job):
        raise ProtocolError(f"job.status for {job.id} from {env.src}, not a party of it")
    reason = _body(env, "reason", str, required=False)
    set_job_state(session, ctx, job, state, reason=reason, cause=env.id)


def on_task_status(session: Session, ctx: PartyContext, env: Envelope) -> None:
    """A task's state: this party's (from its task_engine) or another party's (forwarded)."""
    job = _job(session, env)
    if job is None:
        return
    step = env.task
    state = _body(env, "state", str)
    party = _body(env, "party", str, required=False) or env.src
    if party != env.src:
        raise ProtocolError(f"task.status from {env.src} about party {party}")
    parties = job_parties(job)
    if party not in parties:
        raise ProtocolError(f"task.status for {job.id} from {party}, not a party of it")
    if step is None or step not in {s.name for s in _steps_of(job, ctx)}:
        raise ProtocolError(f"task.status for {job.id}: unknown step {step!r}")
    if state not in TaskState.ALL:
        raise ProtocolError(f"task.status for {job.id}: unknown state {state!r}")
    reason = _body(env, "reason", str, required=False)
    outputs = _body(env, "outputs", dict, required=False) or {}
    attempt = env.body.get("attempt")
    attempt = attempt if isinstance(attempt, int) and attempt > 0 else None
    current = step_attempt(job, step)
    if attempt is not None and attempt < current:
        # a retried or rerun step's old attempt (e.g. the copy killed for the retry)
        log.info("task %s/%s on %s: status of old attempt %d ignored", job.id, step, party, attempt)
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
    if _update_task(job, task, state, reason, attempt) and party == ctx.me:
        task.outputs = {str(k): str(v) for k, v in outputs.items()}
        if state == TaskState.SUCCESS:
            models_registry.on_task_success(session, job=job, task=task, catalog=ctx.catalog)
    if party == ctx.me:
        _forward(session, ctx, job, task, cause=env.id)
    if (
        task.state == TaskState.FAILED
        and task.attempt == step_attempt(job, step)
        and job.state in (JobState.RUNNING, JobState.PAUSED)
    ):
        _maybe_retry(session, ctx, job, step, cause=env.id)
    schedule(session, ctx, job, cause=env.id)


def _forward(session: Session, ctx: PartyContext, job: Job, task: Task, *, cause: str) -> None:
    """Tell every other party of the job this party's task state (no paths, no outputs)."""
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
                    "reason": task.reason,
                    "attempt": task.attempt,
                },
            ),
        )


def _maybe_retry(session: Session, ctx: PartyContext, job: Job, step: str, *, cause: str) -> None:
    """Run a failed step again at attempt + 1 on all its parties, if it has retries left.

    Every party of the step sees the same failure (its own or forwarded) and decides the same
    way, so they all start the new attempt together; each kills its own copy of the old attempt.
    """
    pipeline_step = next((s for s in _steps_of(job, ctx) if s.name == step), None)
    if pipeline_step is None:
        return
    used = int((job.step_retries or {}).get(step, 0))
    if used >= auto_retries(job, pipeline_step):
        return
    attempt = step_attempt(job, step) + 1
    log.info("job %s: retrying step %s (attempt %d, retry %d)", job.id, step, attempt, used + 1)
    restart_steps(session, ctx, job, {step: attempt}, cause=cause, why="retried")
    job.step_retries = {**(job.step_retries or {}), step: used + 1}


def restart_steps(
    session: Session,
    ctx: PartyContext,
    job: Job,
    attempts: dict[str, int],
    *,
    cause: str,
    why: str,
) -> None:
    """Forget the tasks of ``attempts``' steps (every party's) and set their new attempts, so
    that ``schedule`` dispatches them again; this party's copies still alive are killed."""
    for name, attempt in attempts.items():
        for task in [t for t in job.tasks if t.step == name]:
            if task.party_id == ctx.me and task.state not in TaskState.TERMINAL:
                _control(
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
    job.step_retries = {k: v for k, v in (job.step_retries or {}).items() if k not in attempts}


def _control(
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
    _control(session, ctx, job, "job.stop", cause=cause, body={"reason": job.reason})
    for task in active:
        states.check_task_transition(
            job.id, task.step, task.party_id, task.state, TaskState.CANCELED
        )
        task.state = TaskState.CANCELED
        task.reason = f"job {job.state}" + (f": {job.reason}" if job.reason else "")
        _forward(session, ctx, job, task, cause=cause)


def _update_task(job: Job, task: Task, state: str, reason: str | None, attempt: int | None) -> bool:
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


# --- lifecycle commands: stop, pause, resume, rerun, delete -----------------------------------
#
# Asked on any party (REST), applied there and sent to every other party as ``job.stop`` /
# ``job.pause`` / ``job.resume`` / ``job.rerun`` / ``job.delete`` on fl.out.ctl; each party applies
# it to its own copy of the job and tells its workers on fl.control. Illegal requests raise
# ``states.IllegalTransition`` before anything is written.


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
    _control(session, ctx, job, "job.pause", cause=cause)


def resume_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    if job.state != JobState.PAUSED:
        raise states.IllegalTransition(f"job {job.id} (resume)", job.state, JobState.RUNNING)
    _request_peers(session, ctx, job, "job.resume", {}, cause=cause)
    _resume(session, ctx, job, cause=cause)


def _resume(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> None:
    set_job_state(session, ctx, job, JobState.RUNNING, cause=cause)
    _control(session, ctx, job, "job.resume", cause=cause)
    schedule(session, ctx, job, cause=cause)


def rerun_job(session: Session, ctx: PartyContext, job: Job, *, cause: str) -> dict[str, int]:
    """Run the job again from its failed (canceled, timed-out) steps on every party.

    The steps that succeeded on every party keep their outputs; the others and everything
    downstream of them run again at their attempt + 1. Returns those steps' new attempts.
    """
    states.check_job_rerun(job.id, job.state)
    pipeline = job_pipeline(job, ctx.catalog)
    parties = job_parties(job)
    tasks = task_views(job)
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
        _after_job_move(session, ctx, job, cause=cause)
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


def expire_acceptance(
    session: Session, ctx: PartyContext, job_id: str, *, now: int | None = None
) -> bool:
    """End a job still waiting for answers at its acceptance deadline (``timeout``, naming the
    parties that did not answer); False if it has moved on, or its deadline is still ahead."""
    job = session.get(Job, job_id)
    if (
        job is None
        or job.state != JobState.WAITING
        or job.initiator != ctx.me
        or job.accept_deadline_ms is None
        or (now if now is not None else now_ms()) < job.accept_deadline_ms
    ):
        return False
    pending = [m.party_id for m in job.members if m.answer == Answer.PENDING]
    who = ("party " if len(pending) == 1 else "parties ") + ", ".join(pending)
    reason = f"no answer to the proposal from {who} within {ctx.accept_timeout_s:g} s"
    set_job_state(
        session, ctx, job, JobState.TIMEOUT, reason=reason, cause=f"accept-timeout/{job.id}"
    )
    return True


def waiting_for_answers(
    sessions: sessionmaker[Session], ctx: PartyContext
) -> list[tuple[str, int]]:
    """(job id, deadline) of every job this party initiated that still waits for answers."""
    with sessions() as session:
        rows = session.execute(
            select(Job.id, Job.accept_deadline_ms).where(
                Job.state == JobState.WAITING,
                Job.initiator == ctx.me,
                Job.accept_deadline_ms.is_not(None),
            )
        )
        return [(r.id, int(r.accept_deadline_ms)) for r in rows]


def _peer_job(session: Session, env: Envelope) -> Job | None:
    job = _job(session, env)
    if job is not None and env.src not in job_parties(job):
        raise ProtocolError(f"{env.type} for {job.id} from {env.src}, not a party of it")
    return job


def on_stop(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _peer_job(session, env)
    if job is None or job.state in JobState.TERMINAL:
        return
    reason = _body(env, "reason", str, required=False) or f"stopped on party {env.src}"
    set_job_state(session, ctx, job, JobState.CANCELED, reason=reason, cause=env.id)


def on_pause(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _peer_job(session, env)
    if job is None or job.state != JobState.RUNNING:
        return
    _pause(session, ctx, job, f"paused on party {env.src}", cause=env.id)


def on_resume(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _peer_job(session, env)
    if job is None or job.state != JobState.PAUSED:
        return
    _resume(session, ctx, job, cause=env.id)


def on_rerun(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _peer_job(session, env)
    if job is None:
        return
    raw = _body(env, "attempts", dict)
    steps = {s.name for s in _steps_of(job, ctx)}
    attempts: dict[str, int] = {}
    for name, attempt in raw.items():
        if name not in steps or not isinstance(attempt, int) or attempt < 1:
            raise ProtocolError(f"job.rerun for {job.id}: bad attempt {name!r}: {attempt!r}")
        attempts[name] = attempt
    _rerun(session, ctx, job, attempts, cause=env.id)


def on_delete(session: Session, ctx: PartyContext, env: Envelope) -> None:
    job = _peer_job(session, env)
    if job is None:
        return
    if job.state not in JobState.TERMINAL:
        reason = f"deleted on party {env.src}"
        set_job_state(session, ctx, job, JobState.CANCELED, reason=reason, cause=env.id)
    session.delete(job)


_HANDLERS = {
    "job.propose": on_propose,
    "job.accept": on_accept,
    "job.reject": on_reject,
    "job.start": on_start,
    "job.status": on_job_status,
    "task.status": on_task_status,
    "job.stop": on_stop,
    "job.pause": on_pause,
    "job.resume": on_resume,
    "job.rerun": on_rerun,
    "job.delete": on_delete,
}
