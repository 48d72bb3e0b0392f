"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

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
