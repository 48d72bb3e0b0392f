"""What every part of the protocol shares: this party's context, message ids, the outbox, and
reading a job back from its row."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from fedcore.envelope import Envelope
from flow_server import disclosure, placement, scheduler
from flow_server.catalog import Catalog
from flow_server.dsl import DslError, JobSpec, Pipeline, Step, parse_party_specs, parse_pipeline
from flow_server.models import Job, JobParty, OutboxRecord
from flow_server.policy import Policy

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
    default_output: Path  # this party's output root (see flow_server.placement)
    # how long the initiator waits for every party's answer to a proposal (and a party whose
    # policy holds a proposal for its operator, for the operator's decision)
    accept_timeout_s: float = 60.0
    # how this party answers its peers' proposals (grants, floors, ACCEPT_POLICY)
    policy: Policy = field(default_factory=Policy)
    # how many times a step is rerun after this party's platform faults (see ``faults``)
    platform_retries: int = 2
    # where the database and work dirs are: never a peer's output
    state_dir: Path = Path(".run/state")


def derived_id(*parts: str) -> str:
    return uuid.uuid5(_ID_NAMESPACE, "/".join(parts)).hex


def emit(session: Session, topic: str, env: Envelope) -> None:
    session.add(OutboxRecord(topic=topic, payload=env.to_bytes()))


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


def task_views(job: Job, me: str) -> dict[tuple[str, str], scheduler.TaskView]:
    """Every task's state, with this party's failures by code only: the job's reason, which
    every party is told, is made from these."""
    return {
        (t.step, t.party_id): scheduler.TaskView(
            t.state, disclosure.task_reason(t, me), dict(t.outputs)
        )
        for t in job.tasks
    }


def job_member(job: Job, party: str) -> JobParty | None:
    return next((m for m in job.members if m.party_id == party), None)


def steps_of(job: Job, ctx: PartyContext) -> tuple[Step, ...]:
    try:
        return job_pipeline(job, ctx.catalog).steps
    except DslError:
        return ()


def find_job(session: Session, env: Envelope) -> Job | None:
    job = session.get(Job, env.job_id)
    if job is None:
        log.warning("%s %s from %s: unknown job %s", env.type, env.id, env.src, env.job_id)
    return job


def place_outputs(
    session: Session,
    ctx: PartyContext,
    *,
    job_args: dict[str, Any],
    common_args: dict[str, Any],
    initiator: str,
) -> dict[str, Any]:
    """Where this party writes a job's outputs (``flow_server.placement``), as stored on the job;
    decided when it creates or accepts the job, and again when its operator approves it (an
    output grant may have lapsed meanwhile)."""
    chosen = placement.choose(
        session,
        me=ctx.me,
        initiator=initiator,
        requested=placement.requested_output(job_args, common_args),
        default_root=ctx.default_output,
        state_dir=ctx.state_dir,
    )
    if chosen.chosen_by == "settings" and chosen.requested is not None:
        log.info("job from %s: %s", initiator, chosen.reason)
    return chosen.to_json()
