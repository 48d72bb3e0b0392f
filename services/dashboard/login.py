"""``/login`` and ``/logout``: a session cookie for a holder of one of the party's API tokens
(:mod:`dashboard.auth` says how it is checked)."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard import render
from dashboard.auth import SESSION_COOKIE, Sessions, safe_next
from dashboard.pages import html

router = APIRouter(include_in_schema=False)

NextQuery = Annotated[str | None, Query(max_length=2048)]


def _sessions(request: Request) -> Sessions | None:
    sessions: Sessions | None = request.state.sessions
    return sessions


def _login_page(next_path: str, *, error: str | None = None, status_code: int = 200) -> Response:
    nonce = secrets.token_urlsafe(16)
    return html(
        render.login(next_path, nonce=nonce, error=error), nonce=nonce, status_code=status_code
    )


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, next: NextQuery = None) -> Response:
    if _sessions(request) is None:  # nothing to log in to (loopback)
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(safe_next(next))


@router.post("/login", response_class=HTMLResponse)
async def log_in(
    request: Request,
    token: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    sessions = _sessions(request)
    target = safe_next(next)
    if sessions is None:
        return RedirectResponse(target, status_code=303)
    if not await sessions.token_valid(token.strip()):
        return _login_page(target, error="That is not a valid API token.", status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sessions.issue(token.strip()),
        max_age=sessions.lifetime_s,
        httponly=True,
        samesite="strict",
        secure=_https(request),
        path="/",
    )
    return response


@router.post("/logout")
async def log_out(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _https(request: Request) -> bool:
    # behind the ingress, TLS ends at the controller, which says so in X-Forwarded-Proto
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
