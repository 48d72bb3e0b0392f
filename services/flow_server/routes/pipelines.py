"""``/pipelines``: upload a pipeline.yaml, list and read pipelines."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from flow_server import crud, schemas
from flow_server.deps import Offset, ServerDep, SessionDep
from flow_server.dsl import MAX_YAML_BYTES, check_step_args, parse_pipeline
from flow_server.errors import NotFound
from flow_server.models import Pipeline as PipelineRow

router = APIRouter(tags=["pipelines"])


@router.post("/pipelines", status_code=201, response_model=schemas.PipelineCreated)
async def upload_pipeline(
    file: Annotated[UploadFile, File(description="pipeline.yaml")], server: ServerDep
) -> schemas.PipelineCreated:
    data = await file.read(MAX_YAML_BYTES + 1)  # a larger one is refused, unread
    pipeline = parse_pipeline(data, server.catalog)
    check_step_args(pipeline)
    yaml_text = data.decode("utf-8")

    def store() -> str:
        with server.sessions.begin() as session:
            return crud.create_pipeline(session, pipeline=pipeline, yaml_text=yaml_text).id

    pipeline_id = await asyncio.to_thread(store)
    return schemas.PipelineCreated(
        pipeline_id=pipeline_id, name=pipeline.name, steps=pipeline.step_names
    )


@router.get("/pipelines", response_model=schemas.PipelineList)
def list_pipelines(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> schemas.PipelineList:
    rows = crud.list_pipelines(session, limit=limit, offset=offset)
    return schemas.PipelineList(items=[crud.pipeline_out(r) for r in rows])


@router.get("/pipelines/{pipeline_id}", response_model=schemas.PipelineDetail)
def get_pipeline(pipeline_id: str, session: SessionDep) -> schemas.PipelineDetail:
    row = session.get(PipelineRow, pipeline_id)
    if row is None:
        raise NotFound("pipeline", pipeline_id)
    return schemas.PipelineDetail(**crud.pipeline_out(row).model_dump(), yaml=row.yaml_text)
