"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from fedcore.messages import STEP_NAME
from flow_server.errors import ApiError

if TYPE_CHECKING:
    from flow_server.app import FlowServer


def get_server(request: Request) -> FlowServer:
    server: FlowServer = request.app.state.flow_server
    return server


ServerDep = Annotated["FlowServer", Depends(get_server)]


def get_session(server: ServerDep) -> Iterator[Session]:
    """A read-only session for a sync route (FastAPI runs it in its thread pool)."""
    with server.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


# a list's offset: any larger one is no row anyway, and the database's integers end somewhere
# (SQLite refuses an offset beyond 64 bits with an OverflowError)
Offset = Annotated[int, Query(ge=0, le=2**31 - 1)]
# a list's filters by id or name: the characters ids and names are made of
IdFilter = Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_.:-]{1,64}$")]
NameFilter = Annotated[str | None, Query(pattern=STEP_NAME.pattern)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def holds_control_character(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control character (PostgreSQL refuses a NUL in text)."""
    return _CONTROL.search(text) is not None


def refuse_control_characters(request: Request) -> None:
    """No path or query parameter holds a control character: no id, name or filter has one,
    and PostgreSQL refuses a NUL in text (a 500 rather than the 404 or 422 it should be)."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for where, name, value in params:
        if isinstance(value, str) and holds_control_character(value):
            name = _CONTROL.sub("?", name)  # a query's names are the client's too
            raise ApiError(
                422,
                "invalid_request",
                f"{where} parameter {name!r} holds a control character",
                where=f"{where}.{name}",
            )


CleanParamsDep = Depends(refuse_control_characters)
