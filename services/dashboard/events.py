"""Server-Sent Events telling pages that the aggregates changed (they then fetch what they show)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from dashboard.consumer import Changes

RETRY_MS = 5_000
HEARTBEAT_S = 15.0
MIN_INTERVAL_S = 1.0


def _event(version: int) -> str:
    return f"event: change\ndata: {json.dumps({'version': version})}\n\n"


async def change_stream(
    changes: Changes,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    min_interval_s: float = MIN_INTERVAL_S,
) -> AsyncIterator[str]:
    """One event now, then one per change, coalescing bursts (a catch-up after a restart) to one
    per interval.

    The stream ends when ``changes`` is closed (the server is shutting down); browsers reconnect
    on their own after ``retry``.
    """
    seen = changes.version
    yield f"retry: {RETRY_MS}\n\n"
    yield _event(seen)
    while not changes.closed:
        await asyncio.sleep(min_interval_s)
        version = await changes.wait_past(seen, heartbeat_s)
        if changes.closed:
            return
        if version == seen:
            yield ": keep-alive\n\n"  # lets proxies and the browser see the link is alive
            continue
        seen = version
        yield _event(version)
