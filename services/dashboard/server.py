"""Serving the app with uvicorn, ending the open event streams as soon as a stop is requested.

Without that, uvicorn would wait for every browser's ``/api/events`` stream until its graceful
shutdown timeout before it runs the lifespan's stop path.
"""

from __future__ import annotations

import asyncio
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from dashboard.consumer import Changes

GRACEFUL_SHUTDOWN_S = 5


class Server(uvicorn.Server):
    """A uvicorn server that closes the app's :class:`Changes` when asked to exit."""

    def __init__(self, app: FastAPI, *, host: str, port: int, log_level: str = "info") -> None:
        self.app = app
        super().__init__(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level,
                log_config=None,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            )
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.request_stop()

    def request_stop(self) -> None:
        """Stop serving (from the loop's thread or a signal handler)."""
        self.should_exit = True
        changes: Changes | None = getattr(self.app.state, "changes", None)
        if changes is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(changes.close)
