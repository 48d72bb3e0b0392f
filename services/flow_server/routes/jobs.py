"""``/pipelines/{id}/jobs`` and ``/jobs``: submit a job.yaml, list jobs, read one job's state."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Literal

from aiokafka.errors import KafkaError
from fastapi import APIRouter, File, Query, UploadFile

from flow_server import crud, protocol, schemas
from flow_server.deps import ServerDep, SessionDep
from flow_server.errors import NotFound
from flow_server.models import Job
from flow_server.models import Pipeline as PipelineRow

log = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])

# every flow_server.states.JobState (a test pins that they agree)
StateFilter = Literal[
    "waiting", "running", "paused", "success", "failed", "canceled", "timeout", "rejected"
]


@router.post("/pipelines/{pipeline_id}/jobs", status_code=201, response_model=schemas.JobCreated)
async def submit_job(
    pipeline_id: str,
    parameters: Annotated[UploadFile, File(description="job.yaml")],
    server: ServerDep,
) -> schemas.JobCreated:
    data = await parameters.read()

    def create() -> tuple[str, str]:
        with server.sessions.begin() as session:
            row = session.get(PipelineRow, pipeline_id)
            if row is None:
                raise NotFound("pipeline", pipeline_id)
            job = protocol.submit_job(session, server.party, pipeline_row=row, job_yaml=data)
            return job.id, job.state

    async with server.lock:
        job_id, state = await asyncio.to_thread(create)
        try:
            await server.outbox.flush()
        except KafkaError as exc:
            # the job and its proposals are committed; they go out with the next flush
            log.warning("job %s created but its messages are not sent yet: %r", job_id, exc)
    return schemas.JobCreated(job_id=job_id, status=state)


@router.get("/jobs", response_model=schemas.JobList)
def list_jobs(
    session: SessionDep,
    state: StateFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.JobList:
    rows, total = crud.list_jobs(session, state=state, limit=limit, offset=offset)
    return schemas.JobList(
        items=[crud.job_summary(j) for j in rows], total=total, limit=limit, offset=offset
    )


@router.get("/jobs/{job_id}", response_model=schemas.JobDetail)
def get_job(job_id: str, session: SessionDep, server: ServerDep) -> schemas.JobDetail:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound("job", job_id)
    return crud.job_detail(job, catalog=server.catalog)
