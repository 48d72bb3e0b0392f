"""Data access for the REST API: small keyword-only functions over a session."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedcore.envelope import new_id
from flow_server import schemas
from flow_server.catalog import Catalog
from flow_server.dsl import DslError, Pipeline, parse_party_specs, parse_pipeline, takes_part
from flow_server.models import Job
from flow_server.models import Pipeline as PipelineRow


def create_pipeline(session: Session, *, pipeline: Pipeline, yaml_text: str) -> PipelineRow:
    row = PipelineRow(
        id=new_id(), name=pipeline.name, yaml_text=yaml_text, steps=pipeline.step_names
    )
    session.add(row)
    return row


def pipeline_out(row: PipelineRow) -> schemas.PipelineOut:
    return schemas.PipelineOut(
        pipeline_id=row.id, name=row.name, steps=list(row.steps), created_ms=row.created_ms
    )


def list_pipelines(session: Session, *, limit: int, offset: int) -> list[PipelineRow]:
    query = select(PipelineRow).order_by(PipelineRow.created_ms.desc(), PipelineRow.id)
    return list(session.scalars(query.limit(limit).offset(offset)))


def job_summary(job: Job) -> schemas.JobSummary:
    return schemas.JobSummary(
        job_id=job.id,
        pipeline_id=job.pipeline_id,
        pipeline_name=job.pipeline_name,
        initiator=job.initiator,
        state=job.state,
        reason=job.reason,
        parties=list(job.parties),
        created_ms=job.created_ms,
        updated_ms=job.updated_ms,
    )


def list_jobs(
    session: Session, *, state: str | None, limit: int, offset: int
) -> tuple[list[Job], int]:
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if state is not None:
        query = query.where(Job.state == state)
        count = count.where(Job.state == state)
    rows = session.scalars(
        query.order_by(Job.created_ms.desc(), Job.id).limit(limit).offset(offset)
    )
    return list(rows), int(session.scalar(count) or 0)


def job_detail(job: Job, *, catalog: Catalog) -> schemas.JobDetail:
    """The job as this party sees it, with every step's state on every party taking part."""
    try:
        parties = parse_party_specs(job.parties)
    except DslError:
        parties = {m.party_id: m.role for m in job.members}
    roles: dict[str, list[str]] = {}
    for party, role in parties.items():
        roles.setdefault(role, []).append(party)
    tasks = {(t.step, t.party_id): t for t in job.tasks}
    steps: list[schemas.StepOut] = []
    try:
        pipeline = parse_pipeline(job.pipeline_yaml, catalog) if job.pipeline_yaml else None
    except DslError:
        pipeline = None  # a rejected proposal's pipeline may not parse
    for step in pipeline.steps if pipeline else ():
        outs = []
        for party, role in parties.items():
            if not takes_part(step, role):
                continue
            t = tasks.get((step.name, party))
            outs.append(
                schemas.TaskOut(
                    party_id=party,
                    role=role,
                    state=t.state if t else "waiting",
                    reason=t.reason if t else None,
                    code=t.code if t else None,
                    attempt=t.attempt if t else None,
                    updated_ms=t.updated_ms if t else None,
                )
            )
        steps.append(schemas.StepOut(name=step.name, component=step.component, tasks=outs))
    return schemas.JobDetail(
        **job_summary(job).model_dump(),
        roles=roles,
        members=[
            schemas.MemberOut(
                party_id=m.party_id,
                role=m.role,
                answer=m.answer,
                reason=m.reason,
                job_state=m.job_state,
                job_reason=m.job_reason,
            )
            for m in job.members
        ],
        steps=steps,
        fed_since_ms=job.fed_since_ms,
        output=schemas.OutputPlacementOut.model_validate(job.output_placement)
        if job.output_placement
        else None,
    )
