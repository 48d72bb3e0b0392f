"""The initiator's acceptance deadlines: one asyncio timer per job still waiting for answers.

A timer is armed when a job is submitted and re-armed at start-up for every job of ours still
waiting (a restarted flow_server times them out all the same); when it fires, ``expire`` ends the
job if it is still waiting. Nothing polls the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

Expire = Callable[[str], Coroutine[Any, Any, None]]


class AcceptanceDeadlines:
    """Timers keyed by job id; ``close()`` cancels them all."""

    def __init__(self, expire: Expire) -> None:
        self._expire = expire
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._firing: set[asyncio.Task[None]] = set()

    def arm(self, job_id: str, deadline_ms: int) -> None:
        old = self._timers.pop(job_id, None)
        if old is not None:
            old.cancel()
        delay_s = max(0.0, deadline_ms / 1000 - time.time())
        loop = asyncio.get_running_loop()
        self._timers[job_id] = loop.call_later(delay_s, self._fire, job_id)

    @property
    def armed(self) -> frozenset[str]:
        return frozenset(self._timers)

    def _fire(self, job_id: str) -> None:
        self._timers.pop(job_id, None)
        task = asyncio.create_task(self._expire(job_id), name=f"accept-deadline {job_id}")
        self._firing.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._firing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("acceptance deadline: %r", exc, exc_info=exc)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._firing):
            task.cancel()
        await asyncio.gather(*self._firing, return_exceptions=True)
