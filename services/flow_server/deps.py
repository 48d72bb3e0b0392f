"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from fedcore.messages import STEP_NAME

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
# a list's filters by id or name: the characters ids and names are made of (PostgreSQL refuses a
# NUL in text, so a filter with one would otherwise end in a 500)
IdFilter = Annotated[str | None, Query(pattern=r"^[0-9A-Za-z_.:-]{1,64}$")]
NameFilter = Annotated[str | None, Query(pattern=STEP_NAME.pattern)]
