"""API tokens: made by ``tessera token create``, stored as their SHA-256, checked on each request
(when one is required and how it is hashed: :mod:`fedcore.apitokens`, shared with the dashboard).

A token is required (``Authorization: Bearer <token>``) on every route but ``/health`` whenever
the flow_server listens on anything but loopback, or when ``REQUIRE_API_TOKEN=1``. The local
stack on 127.0.0.1 accepts requests without one, so the documented curl calls work as written.
A token is 32 random bytes, so an unsalted SHA-256 is enough to make a stolen database useless.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from fedcore.apitokens import TOKEN_PREFIX, hash_token, token_required
from fedcore.envelope import new_id
from flow_server.deps import ServerDep
from flow_server.errors import ApiError
from flow_server.models import ApiToken

_bearer = HTTPBearer(auto_error=False, description="an API token from `tessera token create`")


@dataclass(frozen=True)
class NewToken:
    token_id: str
    name: str
    token: str  # shown once, never stored


def create_token(session: Session, *, name: str) -> NewToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(id=new_id(), name=name, token_hash=hash_token(token), prefix=token[:10])
    session.add(row)
    session.flush()  # fills the defaults (created_ms)
    return NewToken(token_id=row.id, name=name, token=token)


def register_setup_token(session: Session, token: str) -> None:
    """Make a token the installer generated (``TESSERA_API_TOKEN``) valid, once."""
    digest = hash_token(token)
    if session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first() is None:
        session.add(ApiToken(id=new_id(), name="setup", token_hash=digest, prefix=token[:10]))


def check_token(session: Session, token: str) -> ApiToken | None:
    """The token's row, or None; the stored hash is compared in constant time."""
    digest = hash_token(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_hash == digest)).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return row


def require_token(
    server: ServerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The route dependency: a 401 JSON error unless a valid token is given (when required)."""
    if not token_required(server.settings):
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401,
            "token_required",
            "this flow_server requires an API token: send 'Authorization: Bearer <token>' "
            "(make one with `tessera token create`)",
            "headers.authorization",
        )
    with server.sessions() as session:
        if check_token(session, credentials.credentials) is None:
            raise ApiError(
                401, "invalid_token", "the API token is not valid", "headers.authorization"
            )


TokenDep = Depends(require_token)

# who made a request when no token is needed (the local stack on loopback)
LOCAL_OPERATOR = "local operator (no token)"


def operator_name(
    server: ServerDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The name of the API token that made the request: who a decision is recorded as made by.

    Routes that use it are behind ``require_token``; without a token (allowed on loopback only)
    the decision is recorded as the local operator's."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        with server.sessions() as session:
            row = check_token(session, credentials.credentials)
        if row is not None:
            return row.name
    return LOCAL_OPERATOR


OperatorDep = Annotated[str, Depends(operator_name)]
