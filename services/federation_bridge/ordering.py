"""The receiver's order of a sender's pipelined batches: each stream's batches apply in ``seq``.

A sender keeps several batches in flight to a peer (one HTTP request each), so they may arrive
in any order. Each carries its sender's ``stream``, its ``seq`` and the sender's ``base`` (the
lowest ``seq`` it has no 2xx for). A batch waits here until every earlier batch of its stream has
been applied (:meth:`StreamOrder.applied`); one that already had its turn (a re-send) goes at once
and is de-duplicated.

Nothing here is durable: every batch below ``base`` was answered 2xx, hence applied, so a restarted
receiver (or one that never saw the stream) starts the stream at the first ``base`` it sees. A
batch that waits longer than ``wait_s`` (its predecessor lost on the way, or its sender gone) is
refused (:class:`OutOfTurn`, a 503) and re-sent by its sender.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

# a stream no batch used for this long (its sender restarted) is forgotten
_IDLE_S = 600.0


class OutOfTurn(Exception):
    """A batch waited too long for an earlier batch of its stream."""


@dataclass
class _Stream:
    expected: int
    used: float
    waiters: int = 0
    advanced: asyncio.Event = field(default_factory=asyncio.Event)


class StreamOrder:
    def __init__(self, *, wait_s: float) -> None:
        self._wait_s = wait_s
        self._streams: dict[tuple[str, str], _Stream] = {}

    async def turn(self, src: str, stream: str, seq: int, base: int) -> None:
        """Return once the batches of ``(src, stream)`` before ``seq`` have been applied."""
        if not stream:
            return
        now = time.monotonic()
        state = self._streams.get((src, stream))
        if state is None:
            self._forget_idle(now)
            state = self._streams[(src, stream)] = _Stream(expected=base, used=now)
        state.expected = max(state.expected, base)
        state.used = now
        if seq <= state.expected:
            return
        state.waiters += 1
        try:
            async with asyncio.timeout(self._wait_s):
                while seq > state.expected:
                    await state.advanced.wait()
        except TimeoutError:
            raise OutOfTurn(
                f"batch {seq} of stream {stream} waited {self._wait_s:g} s for batch "
                f"{state.expected}; send that first"
            ) from None
        finally:
            state.waiters -= 1

    def applied(self, src: str, stream: str, seq: int) -> None:
        """Batch ``seq`` of ``(src, stream)`` is produced: let the next one go."""
        state = self._streams.get((src, stream))
        if state is None or seq < state.expected:
            return
        state.expected = seq + 1
        state.advanced.set()
        state.advanced = asyncio.Event()

    def _forget_idle(self, now: float) -> None:
        idle = [k for k, s in self._streams.items() if not s.waiters and now - s.used > _IDLE_S]
        for key in idle:
            del self._streams[key]
