"""``/decisions``: every decision this party made about the proposals it received — accepted,
rejected, held for approval, approved, expired — with the rule or the person that made it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from flow_server import decisions, schemas
from flow_server.deps import IdFilter, SessionDep

router = APIRouter(tags=["decisions"])


@router.get("/decisions", response_model=schemas.DecisionList)
def list_decisions(
    session: SessionDep,
    job_id: IdFilter = None,
    initiator: Annotated[str | None, Query(pattern=r"^\d{1,32}$")] = None,
    decision: Literal["accepted", "rejected", "pending_approval", "approved", "expired"]
    | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.DecisionList:
    """Decisions, newest first (a proposal held for approval has two: held, then decided)."""
    rows, total = decisions.list_decisions(
        session, job_id=job_id, initiator=initiator, decision=decision, limit=limit, offset=offset
    )
    return schemas.DecisionList(
        items=[decisions.decision_out(r) for r in rows], total=total, limit=limit, offset=offset
    )
