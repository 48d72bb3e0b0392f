"""The JSON API: jobs, one job, its metrics and logs, change events, health.

Handlers are ``async`` so they read the aggregator on the event loop that updates it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, StreamingResponse

from dashboard.deps import AggregatorDep, ChangesDep, ConsumerDep, JobDep, SettingsDep
from dashboard.events import change_stream
from dashboard.schemas import (
    ConsumerHealth,
    Health,
    JobDetail,
    JobLogs,
    JobMetrics,
    JobPage,
    JobSummary,
)

router = APIRouter()

# Job states are a small open set (waiting, running, success, failed, canceled, …).
STATE_PATTERN = r"^[a-z][a-z_]{0,31}$"
MAX_LIMIT = 500

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job", "content": {"application/json": {}}}
}


@router.get("/api/jobs", response_model=JobPage)
async def list_jobs(
    aggregator: AggregatorDep,
    state: Annotated[str | None, Query(pattern=STATE_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobPage:
    """Jobs, newest first."""
    jobs = aggregator.jobs(state=state)
    items = [JobSummary.of(j) for j in jobs[offset : offset + limit]]
    return JobPage(items=items, total=len(jobs), limit=limit, offset=offset)


@router.get("/api/jobs/{job_id}", response_model=JobDetail, responses=NOT_FOUND)
async def get_job(job: JobDep) -> JobDetail:
    return JobDetail.of(job)


@router.get("/api/jobs/{job_id}/metrics", response_model=JobMetrics, responses=NOT_FOUND)
async def get_job_metrics(job: JobDep) -> JobMetrics:
    return JobMetrics.of(job)


@router.get("/api/jobs/{job_id}/logs", response_model=JobLogs, responses=NOT_FOUND)
async def get_job_logs(job: JobDep) -> JobLogs:
    return JobLogs.of(job)


@router.get("/api/events", response_class=StreamingResponse)
async def events(changes: ChangesDep) -> StreamingResponse:
    """Server-Sent Events: a ``change`` event whenever a job view changed (at most one a second)."""
    return StreamingResponse(
        change_stream(changes),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(
    settings: SettingsDep, aggregator: AggregatorDep, consumer: ConsumerDep
) -> JSONResponse:
    """200 while the consumer follows Kafka; 503 while it connects, retries or has stopped."""
    st = consumer.status
    if st.connected:
        status = "ok"
    elif st.stopped or st.error:
        status = "degraded"
    else:
        status = "starting"
    body = Health(
        status=status,
        party_id=settings.party_id,
        jobs=len(aggregator),
        consumer=ConsumerHealth(
            connected=st.connected,
            stopped=st.stopped,
            records=st.records,
            last_record_at=st.last_record_at,
            error=st.error,
        ),
    )
    return JSONResponse(body.model_dump(), status_code=200 if status == "ok" else 503)
