"""``/data``: upload a CSV (streamed to disk) or register a path; list, read and delete tables.

``POST /data`` takes one of three bodies, by content type:

* ``multipart/form-data`` with a ``file`` part (and an optional ``name`` field): ``curl -F
  file=@guest.csv``. The multipart parser spools the file to disk; it is then copied in chunks.
* ``text/csv`` or ``application/octet-stream``: the raw CSV, written to disk as it arrives
  (``curl -H 'Content-Type: text/csv' --data-binary @guest.csv '...?name=guest'``).
* ``application/json`` ``{"path": ..., "name": ...}``: register a file that exists on this party.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from flow_server import datasets, schemas
from flow_server.deps import Offset, ServerDep, SessionDep, holds_control_character
from flow_server.errors import ApiError
from flow_server.openapi import error_responses

log = logging.getLogger(__name__)

router = APIRouter(tags=["data"])

_RAW_TYPES = ("text/csv", "application/octet-stream", "text/plain")
_MAX_NAME = 200

_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the CSV"},
                    "name": {"type": "string", "description": "table name (default: file name)"},
                },
            }
        },
        "text/csv": {"schema": {"type": "string", "format": "binary"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": schemas.RegisterTable.model_json_schema()},
    },
}


def _check_name(name: str | None, default: str) -> str:
    chosen = (name or "").strip() or default
    if (
        len(chosen) > _MAX_NAME
        or chosen.startswith(("table:", "model:"))
        or holds_control_character(chosen)
    ):
        raise ApiError(
            422,
            "bad_name",
            f"a table name is 1-{_MAX_NAME} characters, none a control character, not a reference",
            "name",
        )
    return chosen


async def _store(
    server: ServerDep, *, table_id: str, name: str, path: Path, source: str, counter: Any
) -> schemas.TableDetail:
    """Detect the schema and write the row; on any refusal an uploaded file is removed."""

    def store() -> schemas.TableDetail:
        schema = datasets.read_sample(path)
        with server.sessions.begin() as session:
            row = datasets.create_table(
                session,
                table_id=table_id,
                name=name,
                path=path,
                source=source,
                schema=schema,
                counter=counter,
            )
            return datasets.table_detail(row)

    if source != "upload":
        return await asyncio.to_thread(store)
    with datasets.removed_on_error(path):
        return await asyncio.to_thread(store)


async def _upload_multipart(request: Request, server: ServerDep) -> schemas.TableDetail:
    table_id = datasets.new_table_id()
    dest = datasets.data_dir(server.settings.state_dir) / f"{table_id}.csv"
    async with request.form(max_files=1, max_fields=4) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_request", "the request has no 'file' part", "body.file")
        raw_name = form.get("name")
        name = _check_name(
            raw_name if isinstance(raw_name, str) else None,
            Path(upload.filename or f"{table_id}.csv").stem,
        )
        with datasets.removed_on_error(dest):
            counter = await asyncio.to_thread(datasets.copy_file, upload.file, dest)
    return await _store(
        server, table_id=table_id, name=name, path=dest, source="upload", counter=counter
    )


async def _upload_raw(request: Request, server: ServerDep, name: str | None) -> schemas.TableDetail:
    table_id = datasets.new_table_id()
    chosen = _check_name(name, table_id)
    dest = datasets.data_dir(server.settings.state_dir) / f"{table_id}.csv"
    with datasets.removed_on_error(dest):
        counter = await datasets.write_stream(request.stream(), dest)
    return await _store(
        server, table_id=table_id, name=chosen, path=dest, source="upload", counter=counter
    )


async def _register(request: Request, server: ServerDep) -> schemas.TableDetail:
    try:
        body = schemas.RegisterTable.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in ("body", *first["loc"]))
        raise ApiError(422, "invalid_request", str(first["msg"]), where) from None

    def check() -> Path:
        path = Path(body.path)
        if not path.is_absolute():
            raise ApiError(422, "bad_path", f"{body.path!r} is not an absolute path", "body.path")
        if not path.is_file():
            raise ApiError(
                422,
                "data_not_found",
                f"{body.path} is not a file on party {server.party.me}",
                "body.path",
            )
        return path.resolve()

    path = await asyncio.to_thread(check)
    name = _check_name(body.name, path.stem)
    counter = await asyncio.to_thread(datasets.count_lines, path)
    return await _store(
        server,
        table_id=datasets.new_table_id(),
        name=name,
        path=path,
        source="path",
        counter=counter,
    )


@router.post(
    "/data",
    status_code=201,
    response_model=schemas.TableDetail,
    responses=error_responses(409, 415, 422),
    openapi_extra={"requestBody": _REQUEST_BODY},
    summary="Upload a CSV or register a path",
)
async def create_table(
    request: Request,
    server: ServerDep,
    name: Annotated[
        str | None, Query(description="table name, for a raw text/csv body", max_length=200)
    ] = None,
) -> schemas.TableDetail:
    """Upload a CSV (multipart ``file``, or a raw ``text/csv`` body streamed to disk) or register
    an existing file (``application/json`` ``{"path", "name"}``). The answer holds the detected
    schema: id column (``id``/``ID``, else the first), label column (``y``/``label`` if 0/1),
    each other column numeric or categorical, the row count and the first 10 rows."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _upload_multipart(request, server)
    if content_type in _RAW_TYPES:
        return await _upload_raw(request, server, name)
    if content_type == "application/json":
        return await _register(request, server)
    raise ApiError(
        415,
        "unsupported_media_type",
        f"content type {content_type or 'none'!r} is not one of multipart/form-data, "
        "text/csv, application/octet-stream, application/json",
        "headers.content-type",
    )


@router.get("/data", response_model=schemas.TableList)
def list_tables(
    session: SessionDep,
    source: Literal["upload", "path"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> schemas.TableList:
    """Registered tables, newest first; ``source`` filters uploads from registered paths."""
    rows, total = datasets.list_tables(session, source=source, limit=limit, offset=offset)
    return schemas.TableList(
        items=[datasets.table_out(r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/data/{table_id}", response_model=schemas.TableDetail, responses=error_responses(404))
def get_table(table_id: str, session: SessionDep) -> schemas.TableDetail:
    return datasets.table_detail(datasets.get_table(session, table_id))


@router.delete("/data/{table_id}", response_model=schemas.Deleted, responses=error_responses(404))
def delete_table(table_id: str, server: ServerDep) -> schemas.Deleted:
    """Forget a table; an uploaded file is removed too (a registered path is left alone)."""
    with server.sessions.begin() as session:
        row = datasets.get_table(session, table_id)
        path, source = Path(row.path), row.source
        session.delete(row)
    if source == "upload":
        datasets.remove_quietly(path)
    return schemas.Deleted(deleted=table_id)
