"""Who may see the dashboard: off loopback (or with ``REQUIRE_API_TOKEN=1``), a holder of one of
the party's API tokens.

The tokens are the flow_server's (``tessera token create``): the dashboard checks a token's
digest against the flow_server's table through the same ``DATABASE_URL``
(:func:`fedcore.apitokens.known_digest`). A request is let in with ``Authorization: Bearer
<token>``, or with the session cookie that ``POST /login`` sets once a token was typed into the
login page: ``<expiry>.<token digest>.<HMAC-SHA256>``, signed with a key the dashboard makes at
start (so a restart ends every session), HttpOnly, SameSite=Strict, ``Secure`` behind HTTPS, and
valid for :data:`SESSION_S` seconds and only while its token still exists. Without either, a page
request is sent to ``/login`` and an API request gets a 401. ``/health``, ``/metrics`` and the
login page stay open; on loopback (the local ``make up`` stack) everything does.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Final
from urllib.parse import quote

from sqlalchemy import Engine
from starlette.types import ASGIApp, Receive, Scope, Send

from fedcore.apitokens import MAX_TOKEN_CHARS, hash_token, known_digest

SESSION_COOKIE: Final = "tessera_session"
SESSION_S: Final = 8 * 3600
OPEN_PATHS: Final = frozenset({"/health", "/metrics", "/login"})
JSON_PREFIXES: Final = ("/api/", "/openapi.json", "/docs", "/redoc")


class Sessions:
    """Checks tokens against the party's token table and signs and checks session cookies."""

    def __init__(
        self,
        engine: Engine,
        *,
        lifetime_s: int = SESSION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.lifetime_s = lifetime_s
        self._clock = clock
        self._key = secrets.token_bytes(32)

    async def token_valid(self, token: str) -> bool:
        if not token or len(token) > MAX_TOKEN_CHARS:
            return False
        return await asyncio.to_thread(known_digest, self.engine, hash_token(token))

    def issue(self, token: str) -> str:
        """A session cookie value for a token already found valid."""
        claim = f"{int(self._clock()) + self.lifetime_s}.{hash_token(token)}"
        return f"{claim}.{self._sign(claim)}"

    async def session_valid(self, cookie: str) -> bool:
        expires, _, rest = cookie.partition(".")
        digest, _, signature = rest.partition(".")
        claim = f"{expires}.{digest}"
        if not (expires.isdigit() and hmac.compare_digest(signature, self._sign(claim))):
            return False
        if int(expires) <= self._clock():
            return False
        return await asyncio.to_thread(known_digest, self.engine, digest)

    def _sign(self, claim: str) -> str:
        return hmac.new(self._key, claim.encode(), hashlib.sha256).hexdigest()


def bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def session_cookie(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except ValueError:  # http.cookies.CookieError: a malformed header is no session
                return None
            if SESSION_COOKIE in jar:
                return jar[SESSION_COOKIE].value
    return None


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this dashboard only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


class LoginRequired:
    """ASGI middleware: lets a request in if the app's :class:`Sessions` (lifespan state
    ``sessions``; None when no token is required) accept its bearer token or session cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sessions: Sessions | None = scope.get("state", {}).get("sessions")
        if scope["type"] != "http" or sessions is None or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        token = bearer(headers)
        cookie = session_cookie(headers)
        if (token is not None and await sessions.token_valid(token)) or (
            cookie is not None and await sessions.session_valid(cookie)
        ):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith(JSON_PREFIXES):
            body = json.dumps(
                {
                    "detail": "this dashboard requires an API token: send 'Authorization: "
                    "Bearer <token>' or log in at /login"
                    if token is None
                    else "the API token is not valid"
                }
            ).encode()
            json_type = (b"content-type", b"application/json")
            await _respond(send, 401, body, [json_type, (b"www-authenticate", b"Bearer")])
            return
        target = scope["path"] + (
            f"?{scope['query_string'].decode()}" if scope["query_string"] else ""
        )
        location = f"/login?next={quote(target, safe='/')}"
        await _respond(send, 303, b"", [(b"location", location.encode())])


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
