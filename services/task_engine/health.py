"""The worker's HTTP endpoint: ``GET /health`` → 200 with the steps running now; ``GET /metrics``
→ its Prometheus metrics."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fedcore.hostcheck import HostCheck
from fedcore.settings import PartySettings
from task_engine.metrics import CONTENT_TYPE


def health_app(
    settings: PartySettings,
    running: Callable[[], list[dict[str, Any]]],
    metrics: Callable[[], bytes] | None = None,
) -> Starlette:
    """The endpoint's app; on loopback it answers only its own address (Host header)."""
    party_id = settings.party_id

    async def health(request: Request) -> JSONResponse:
        steps = running()
        return JSONResponse({"status": "ok", "party": party_id, "running": steps})

    routes = [Route("/health", health, methods=["GET"])]
    if metrics is not None:
        render = metrics

        async def metrics_endpoint(request: Request) -> Response:
            return Response(render(), media_type=CONTENT_TYPE)

        routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    return Starlette(routes=routes, middleware=[Middleware(HostCheck, settings=settings)])


class HealthServer(uvicorn.Server):
    """uvicorn inside the worker's own loop; the worker, not uvicorn, owns the process signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def health_server(app: Starlette, host: str, port: int) -> HealthServer:
    config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_config=None)
    return HealthServer(config)


def bind_tcp(host: str, port: int) -> socket.socket:
    """The health endpoint's listening socket, bound up front so that a busy port is a plain
    ``OSError`` from ``Worker.run`` (uvicorn itself would ``sys.exit`` the whole process)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
