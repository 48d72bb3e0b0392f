"""Dependencies for the routes, as ``Annotated`` aliases."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
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
