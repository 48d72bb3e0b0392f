"""``/health``: the database answers and the event consumer is alive."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from flow_server import schemas
from flow_server.deps import ServerDep, SessionDep
from flow_server.errors import ApiError

router = APIRouter(tags=["health"])


@router.get("/health", response_model=schemas.Health)
def health(server: ServerDep, session: SessionDep) -> schemas.Health:
    session.execute(text("SELECT 1"))
    if server.consumer.error is not None:
        raise ApiError(
            503, "consumer_failed", f"the event consumer stopped: {server.consumer.error!r}"
        )
    if not server.consumer.running:
        raise ApiError(503, "consumer_stopped", "the event consumer is not running")
    return schemas.Health(status="ok", party_id=server.party.me, consumer="running")
