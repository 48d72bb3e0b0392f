"""``/grants``: what of this party's data each peer may use in the jobs it proposes.

``POST /grants`` makes a grant (a table by name, or a file or directory path, for one peer, as
``host`` or ``guest``, optionally for some components only and until an expiry; or an ``output``
directory), ``GET /grants`` lists them (``peer``, ``kind``, ``active`` filters), ``GET
/grants/{id}`` reads one and ``DELETE /grants/{id}`` revokes it: a revoked grant stays listed,
with who revoked it and when. See ``flow_server.grants``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from flow_server import grants, schemas
from flow_server.auth import OperatorDep
from flow_server.deps import ServerDep, SessionDep
from flow_server.errors import ApiError, NotFound
from flow_server.models import DataGrant, DataTable
from flow_server.openapi import error_responses

router = APIRouter(tags=["grants"])


def grant_out(session: Session, row: DataGrant) -> schemas.GrantOut:
    table = session.get(DataTable, row.table_id) if row.table_id else None
    return schemas.GrantOut(
        grant_id=row.id,
        peer=row.peer,
        kind=row.kind,
        table_id=row.table_id,
        table_name=table.name if table is not None else None,
        path=row.path,
        role=row.role,
        components=list(row.components),
        expires_ms=row.expires_ms,
        state=grants.grant_state(row),
        created_ms=row.created_ms,
        created_by=row.created_by,
        revoked_ms=row.revoked_ms,
        revoked_by=row.revoked_by,
    )


@router.post(
    "/grants", status_code=201, response_model=schemas.GrantOut, responses=error_responses(422)
)
def create_grant(
    body: schemas.GrantCreate, server: ServerDep, operator: OperatorDep
) -> schemas.GrantOut:
    """Grant a peer the use of a table (``table``) or a file or directory (``path``) as its
    input in the jobs it proposes, or a directory as this party's ``output`` (``kind: output``)."""
    role = body.role if body.role is not None or body.kind == "output" else "host"
    with server.sessions.begin() as session:
        try:
            row = grants.create_grant(
                session,
                peer=body.peer,
                kind=body.kind,
                table=body.table,
                path=body.path,
                role=role,
                components=body.components,
                expires_ms=body.expires_ms,
                created_by=operator,
                known_peers=server.party.peers,
                known_components=server.catalog,
            )
        except grants.GrantInvalid as exc:
            raise ApiError(422, exc.code, exc.message, f"body.{exc.where}") from None
        return grant_out(session, row)


@router.get("/grants", response_model=schemas.GrantList)
def list_grants(
    session: SessionDep,
    peer: Annotated[str | None, Query(pattern=r"^\d{1,32}$")] = None,
    kind: Literal["input", "output"] | None = None,
    active: Annotated[bool, Query(description="only grants neither expired nor revoked")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> schemas.GrantList:
    """Grants, newest first."""
    rows, total = grants.list_grants(
        session, peer=peer, kind=kind, active_only=active, limit=limit, offset=offset
    )
    return schemas.GrantList(
        items=[grant_out(session, r) for r in rows], total=total, limit=limit, offset=offset
    )


@router.get("/grants/{grant_id}", response_model=schemas.GrantOut, responses=error_responses(404))
def get_grant(grant_id: str, session: SessionDep) -> schemas.GrantOut:
    row = session.get(DataGrant, grant_id)
    if row is None:
        raise NotFound("grant", grant_id)
    return grant_out(session, row)


@router.delete(
    "/grants/{grant_id}", response_model=schemas.GrantOut, responses=error_responses(404)
)
def revoke_grant(grant_id: str, server: ServerDep, operator: OperatorDep) -> schemas.GrantOut:
    """Revoke a grant: proposals naming it are refused from now on, including those waiting
    for approval. The grant stays listed as ``revoked``."""
    with server.sessions.begin() as session:
        row = session.get(DataGrant, grant_id)
        if row is None:
            raise NotFound("grant", grant_id)
        return grant_out(session, grants.revoke_grant(session, row, by=operator))
