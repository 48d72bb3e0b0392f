"""``/models``: trained models of this party: list, show, export as .tar.gz, import, delete."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, UploadFile
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from flow_server import models_registry, schemas
from flow_server.deps import IdFilter, NameFilter, Offset, ServerDep, SessionDep
from flow_server.openapi import error_responses

router = APIRouter(tags=["models"])


def _models_dir(server: ServerDep) -> Path:
    path = server.settings.state_dir / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


@router.get("/models", response_model=schemas.ModelList)
def list_models(
    session: SessionDep,
    job_id: IdFilter = None,
    component: NameFilter = None,
    source: Literal["job", "import"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> schemas.ModelList:
    """This party's models, newest first, filtered by job, component or source."""
    rows, total = models_registry.list_models(
        session, job_id=job_id, component=component, source=source, limit=limit, offset=offset
    )
    return schemas.ModelList(
        items=[models_registry.model_out(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/models/{model_id}", response_model=schemas.ModelOut, responses=error_responses(404))
def get_model(model_id: str, session: SessionDep) -> schemas.ModelOut:
    return models_registry.model_out(models_registry.get_model(session, model_id))


@router.get(
    "/models/{model_id}/export",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
            "description": "a .tar.gz with metadata.json and the model file",
        },
        **error_responses(404, 409),
    },
)
def export_model(model_id: str, session: SessionDep) -> FileResponse:
    """The model as a .tar.gz (``metadata.json`` + ``model``), for ``POST /models/import``."""
    row = models_registry.get_model(session, model_id)
    with tempfile.NamedTemporaryFile(suffix=".tar.gz", delete=False) as tmp:
        try:
            models_registry.write_export(row, tmp)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    return FileResponse(
        tmp.name,
        media_type="application/gzip",
        filename=f"model-{model_id}.tar.gz",
        background=BackgroundTask(Path(tmp.name).unlink, missing_ok=True),
    )


@router.post(
    "/models/import",
    status_code=201,
    response_model=schemas.ModelOut,
    responses=error_responses(422),
)
async def import_model(
    file: Annotated[UploadFile, File(description="a .tar.gz from GET /models/{id}/export")],
    server: ServerDep,
) -> schemas.ModelOut:
    models_dir = _models_dir(server)

    def store() -> schemas.ModelOut:
        with server.sessions.begin() as session:
            row = models_registry.import_archive(session, archive=file.file, models_dir=models_dir)
            return models_registry.model_out(row)

    return await asyncio.to_thread(store)


@router.delete("/models/{model_id}", response_model=schemas.Deleted, responses=error_responses(404))
def delete_model(model_id: str, server: ServerDep) -> schemas.Deleted:
    """Forget a model (an imported model's file is removed; a job's outputs stay)."""
    with server.sessions.begin() as session:
        models_registry.delete_model(session, model_id, models_dir=_models_dir(server))
    return schemas.Deleted(deleted=model_id)
