"""The Host header check of a party's loopback APIs (no DNS rebinding).

A web page from anywhere can make the browser on a party's machine send requests to
``127.0.0.1``: under a name of the attacker's that resolves there (DNS rebinding), they are
same-origin for that page, which could then read the loopback APIs that need no token. Such a
request carries the attacker's name in ``Host``; :class:`HostCheck` answers it 400 unless the
host is ``127.0.0.1``, ``localhost``, ``[::1]`` or the bind host with the port the request came
in on, or the party's ``DOMAIN``. Off loopback the APIs require a token instead, and the check is
off (probes and proxies reach them under names of their own).
"""

from __future__ import annotations

import json
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from fedcore.apitokens import is_loopback
from fedcore.settings import PartySettings

LOOPBACK_NAMES: Final = ("127.0.0.1", "localhost", "[::1]")


def loopback_names(settings: PartySettings) -> frozenset[str] | None:
    """The host names a loopback service answers to (with its port); None off loopback."""
    if not is_loopback(settings.bind_host):
        return None
    bind = f"[{settings.bind_host}]" if ":" in settings.bind_host else settings.bind_host
    return frozenset({*LOOPBACK_NAMES, bind.lower()})


def split_host(host: str) -> tuple[str, str]:
    """``name:port`` → (name, port); the port is "" when there is none."""
    host = host.strip().lower()
    if host.endswith("]") or ":" not in host:
        return host, ""
    name, _, port = host.rpartition(":")
    return name, port


class HostCheck:
    """ASGI middleware: a request whose ``Host`` is not this service's own address gets 400."""

    def __init__(self, app: ASGIApp, *, settings: PartySettings) -> None:
        self.app = app
        self.names = loopback_names(settings)
        self.domain = settings.domain.lower()

    def accepts(self, host: str, port: int | None) -> bool:
        if self.names is None:
            return True
        name, given = split_host(host)
        return name == self.domain or (name in self.names and given == str(port))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.names is None:
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        server = scope.get("server")
        if self.accepts(host, server[1] if server else None):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = json.dumps(
            {
                "code": "host_not_allowed",
                "message": "this service answers only requests to its own address, not to "
                "another name that resolves to it",
                "where": "headers.host",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
