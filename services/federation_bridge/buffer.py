"""A bounded per-peer queue of records waiting to be sent: the sender's backpressure.

Bounded by record count and value bytes. The consumer loop only offers records (``try_put``);
when a buffer is full it stops reading Kafka until :meth:`wait_for_space` returns, so records
wait in Kafka rather than in memory. One task takes from a buffer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sized
from typing import Generic, TypeVar

T = TypeVar("T", bound=Sized)


class PeerBuffer(Generic[T]):
    def __init__(self, *, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._items: deque[T] = deque()
        self._bytes = 0
        self._nonempty = asyncio.Event()
        self._space = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def fits(self, size: int) -> bool:
        """Whether an item of ``size`` bytes would be taken now (an empty buffer takes any)."""
        return not self._items or (
            len(self._items) < self.max_records and self._bytes + size <= self.max_bytes
        )

    def try_put(self, item: T) -> bool:
        """Append ``item`` unless the buffer is full."""
        if not self.fits(len(item)):
            return False
        self._items.append(item)
        self._bytes += len(item)
        self._nonempty.set()
        return True

    async def take(self, *, max_records: int, max_bytes: int) -> list[T]:
        """Wait for at least one item, then remove up to ``max_records`` / about ``max_bytes``."""
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()
        out: list[T] = []
        size = 0
        while self._items and len(out) < max_records:
            nxt = len(self._items[0])
            if out and size + nxt > max_bytes:
                break
            out.append(self._items.popleft())
            size += nxt
        self._bytes -= size
        self._space.set()
        return out

    async def wait_until_fits(self, size: int) -> None:
        """Return once an item of ``size`` bytes fits (checked, not signalled: no lost wake-up)."""
        while not self.fits(size):
            self._space.clear()
            await self._space.wait()
