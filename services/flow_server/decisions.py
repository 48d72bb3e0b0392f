"""The record of every decision this party made about a proposal it received: the proposal as it
arrived, the decision, the rule or the person (the API token's name) that made it, and when.

Append-only: a proposal that waits for the operator has two rows (``pending_approval`` by the
policy, then ``approved`` / ``rejected`` by a person, or ``expired`` by the deadline), and the rows
stay when the job is deleted — the audit trail a party shows for what its data was used for.
Each decision is also announced on this party's ``fl.status`` (``proposal.decision``), so its
dashboard shows it on the job's page.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server import schemas
from flow_server.models import Decision, OutboxRecord, now_ms

# on fl.status, for this party's dashboard (a party's own topic: never sent to a peer)
EVENT = "proposal.decision"

ACCEPTED = "accepted"
REJECTED = "rejected"
PENDING = "pending_approval"
APPROVED = "approved"
EXPIRED = "expired"

POLICY = "policy"  # decided_by: this party's policy, applied on its own
DEADLINE = "deadline"  # decided_by: the acceptance deadline


def record(
    session: Session,
    *,
    me: str,
    job_id: str,
    initiator: str,
    proposal: dict[str, Any],
    decision: str,
    rule: str,
    decided_by: str,
    code: str | None = None,
    reason: str | None = None,
) -> Decision:
    """Append one decision; ``proposal`` is the ``job.propose`` body as received."""
    parties = proposal.get("parties")
    common = proposal.get("common_args")
    own = proposal.get("party_args")
    pipeline = proposal.get("pipeline")
    row = Decision(
        job_id=job_id,
        initiator=initiator,
        pipeline_name=str(proposal.get("pipeline_name") or "")[:200],
        pipeline_yaml=pipeline if isinstance(pipeline, str) else "",
        parties=[p for p in parties if isinstance(p, str)] if isinstance(parties, list) else [],
        common_args=common if isinstance(common, dict) else {},
        party_args=own if isinstance(own, dict) else {},
        decision=decision,
        code=code,
        rule=rule,
        decided_by=decided_by[:200],
        reason=reason,
        decided_ms=now_ms(),
    )
    session.add(row)
    session.add(
        OutboxRecord(
            topic=topics.STATUS,
            payload=Envelope(
                type=EVENT,
                job_id=job_id,
                src=me,
                body={
                    "initiator": initiator,
                    "decision": decision,
                    "code": code,
                    "rule": rule,
                    "decided_by": row.decided_by,
                    "reason": reason,
                    "decided_ms": row.decided_ms,
                },
            ).to_bytes(),
        )
    )
    return row


def proposal_of(row: Decision) -> dict[str, Any]:
    """The proposal a decision was about, in the shape of a ``job.propose`` body."""
    return {
        "pipeline": row.pipeline_yaml,
        "pipeline_name": row.pipeline_name,
        "parties": list(row.parties),
        "common_args": dict(row.common_args),
        "party_args": dict(row.party_args),
    }


def latest(session: Session, job_id: str) -> Decision | None:
    return session.scalars(
        select(Decision).where(Decision.job_id == job_id).order_by(Decision.id.desc())
    ).first()


def list_decisions(
    session: Session,
    *,
    job_id: str | None,
    initiator: str | None,
    decision: str | None,
    limit: int,
    offset: int,
) -> tuple[list[Decision], int]:
    query = select(Decision)
    if job_id is not None:
        query = query.where(Decision.job_id == job_id)
    if initiator is not None:
        query = query.where(Decision.initiator == initiator)
    if decision is not None:
        query = query.where(Decision.decision == decision)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(Decision.id.desc()).limit(limit).offset(offset))
    return list(rows), int(total or 0)


def decision_out(row: Decision) -> schemas.DecisionOut:
    return schemas.DecisionOut(
        decision_id=row.id,
        job_id=row.job_id,
        initiator=row.initiator,
        pipeline_name=row.pipeline_name,
        parties=list(row.parties),
        party_args=dict(row.party_args),
        common_args=dict(row.common_args),
        decision=row.decision,
        code=row.code,
        rule=row.rule,
        decided_by=row.decided_by,
        reason=row.reason,
        decided_ms=row.decided_ms,
    )
