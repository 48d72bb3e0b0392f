"""``/metrics``: the flow_server's Prometheus metrics (text format)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from flow_server.deps import ServerDep, SessionDep
from flow_server.metrics import CONTENT_TYPE

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(server: ServerDep, session: SessionDep) -> Response:
    server.metrics.count_jobs(session)
    return Response(server.metrics.render(), media_type=CONTENT_TYPE)
