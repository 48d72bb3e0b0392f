"""``/pipelines/{id}/jobs`` and ``/jobs``: submit a job.yaml, list jobs, read one job's state,
and stop, pause, resume, rerun or delete a job on every party."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Annotated, Any, Literal

from aiokafka.errors import KafkaError
from fastapi import APIRouter, File, Query, Response, UploadFile
from sqlalchemy.orm import Session

from fedcore.envelope import new_id
from flow_server import crud, protocol, schemas
from flow_server.auth import OperatorDep
from flow_server.deps import Offset, ServerDep, SessionDep
from flow_server.dsl import MAX_YAML_BYTES
from flow_server.errors import NotFound
from flow_server.models import Job
from flow_server.models import Pipeline as PipelineRow

log = logging.getLogger(__name__)

router = APIRouter(tags=["jobs"])

# every flow_server.states.JobState (a test pins that they agree)
StateFilter = Literal[
    "pending_approval",
    "waiting",
    "running",
    "paused",
    "success",
    "failed",
    "canceled",
    "timeout",
    "rejected",
]


@router.post("/pipelines/{pipeline_id}/jobs", status_code=201, response_model=schemas.JobCreated)
async def submit_job(
    pipeline_id: str,
    parameters: Annotated[UploadFile, File(description="job.yaml")],
    server: ServerDep,
) -> schemas.JobCreated:
    data = await parameters.read(MAX_YAML_BYTES + 1)  # a larger one is refused, unread

    def create() -> tuple[str, str, tuple[str, int] | None]:
        with server.sessions.begin() as session:
            row = session.get(PipelineRow, pipeline_id)
            if row is None:
                raise NotFound("pipeline", pipeline_id)
            job = protocol.submit_job(session, server.party, pipeline_row=row, job_yaml=data)
            if job.accept_deadline_ms is not None and server.deadlines is not None:
                deadline = (job.id, job.accept_deadline_ms)
            else:
                deadline = None
            return job.id, job.state, deadline

    async with server.lock:
        job_id, state, deadline = await asyncio.to_thread(create)
        if deadline is not None and server.deadlines is not None:
            server.deadlines.arm(*deadline)
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
    offset: Offset = 0,
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


Command = Callable[[Session, protocol.PartyContext, Job], object]


async def _command(server: ServerDep, job_id: str, command: Command) -> schemas.JobSummary | None:
    """Apply a lifecycle command in one transaction, then send what it caused."""

    def run() -> schemas.JobSummary | None:
        with server.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise NotFound("job", job_id)
            command(session, server.party, job)
            session.flush()
            return crud.job_summary(job) if session.get(Job, job_id) is not None else None

    async with server.lock:
        summary = await asyncio.to_thread(run)
        try:
            await server.outbox.flush()
        except KafkaError as exc:
            log.warning("job %s: command committed, its messages not sent yet: %r", job_id, exc)
    return summary


def _cause() -> str:
    return f"rest/{new_id()}"


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": schemas.ErrorOut, "description": "not allowed in the job's state"}
}


@router.post("/jobs/{job_id}/stop", response_model=schemas.JobSummary, responses=_CONFLICT)
async def stop_job(job_id: str, server: ServerDep) -> schemas.JobSummary | None:
    """Cancel the job on every party; its running steps are killed."""
    return await _command(
        server, job_id, lambda s, ctx, job: protocol.stop_job(s, ctx, job, cause=_cause())
    )


@router.post("/jobs/{job_id}/pause", response_model=schemas.JobSummary, responses=_CONFLICT)
async def pause_job(job_id: str, server: ServerDep) -> schemas.JobSummary | None:
    """Suspend the job's running steps on every party; nothing new starts until resumed."""
    return await _command(
        server, job_id, lambda s, ctx, job: protocol.pause_job(s, ctx, job, cause=_cause())
    )


@router.post("/jobs/{job_id}/resume", response_model=schemas.JobSummary, responses=_CONFLICT)
async def resume_job(job_id: str, server: ServerDep) -> schemas.JobSummary | None:
    """Continue a paused job on every party."""
    return await _command(
        server, job_id, lambda s, ctx, job: protocol.resume_job(s, ctx, job, cause=_cause())
    )


@router.post("/jobs/{job_id}/rerun", response_model=schemas.JobSummary, responses=_CONFLICT)
async def rerun_job(job_id: str, server: ServerDep) -> schemas.JobSummary | None:
    """Run a failed, canceled or timed-out job again from the steps that did not succeed,
    reusing the outputs of those that did, on every party."""
    return await _command(
        server, job_id, lambda s, ctx, job: protocol.rerun_job(s, ctx, job, cause=_cause())
    )


@router.post("/jobs/{job_id}/approve", response_model=schemas.JobSummary, responses=_CONFLICT)
async def approve_job(
    job_id: str, server: ServerDep, operator: OperatorDep
) -> schemas.JobSummary | None:
    """Approve a peer's proposal held for this party's operator (``pending_approval``). Its
    inputs are checked against the grants again: a grant revoked meanwhile refuses it."""
    return await _command(
        server,
        job_id,
        lambda s, ctx, job: protocol.approve_job(s, ctx, job, by=operator, cause=_cause()),
    )


@router.post("/jobs/{job_id}/reject", response_model=schemas.JobSummary, responses=_CONFLICT)
async def reject_job(
    job_id: str,
    server: ServerDep,
    operator: OperatorDep,
    body: schemas.RejectJob | None = None,
) -> schemas.JobSummary | None:
    """Reject a peer's proposal held for this party's operator; the initiator sees the reason."""
    reason = body.reason if body is not None else None
    return await _command(
        server,
        job_id,
        lambda s, ctx, job: protocol.reject_job(
            s, ctx, job, by=operator, reason=reason, cause=_cause()
        ),
    )


@router.delete("/jobs/{job_id}", status_code=204, responses=_CONFLICT)
async def delete_job(job_id: str, server: ServerDep) -> Response:
    """Forget an ended job on every party (409 while it is not ended: stop it first)."""
    await _command(
        server, job_id, lambda s, ctx, job: protocol.delete_job(s, ctx, job, cause=_cause())
    )
    return Response(status_code=204)
