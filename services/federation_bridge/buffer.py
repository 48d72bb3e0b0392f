"""A bounded per-peer queue of records read and not yet delivered: the sender's backpressure.

Bounded by record count and value bytes, counting both the records waiting to be sent and those
taken into batches in flight until they are released (:meth:`PeerBuffer.release`), so the number
of batches in flight does not change how much a peer may hold in memory. The consumer loop only
offers records (``try_put``); when a buffer is full it stops reading Kafka until
:meth:`PeerBuffer.wait_until_fits` returns, so records wait in Kafka rather than in memory. One
task takes from a buffer.
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
        self._count = 0  # waiting + taken and not released; _bytes likewise
        self._bytes = 0
        self._nonempty = asyncio.Event()
        self._space = asyncio.Event()

    def __len__(self) -> int:
        """Records waiting to be taken."""
        return len(self._items)

    @property
    def taken(self) -> int:
        """Records taken into batches and not yet released."""
        return self._count - len(self._items)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def fits(self, size: int) -> bool:
        """Whether an item of ``size`` bytes would be taken now (an empty buffer takes any)."""
        return not self._count or (
            self._count < self.max_records and self._bytes + size <= self.max_bytes
        )

    def try_put(self, item: T) -> bool:
        """Append ``item`` unless the buffer is full."""
        if not self.fits(len(item)):
            return False
        self._items.append(item)
        self._count += 1
        self._bytes += len(item)
        self._nonempty.set()
        return True

    async def take(self, *, max_records: int, max_bytes: int) -> list[T]:
        """Wait for at least one item, then remove up to ``max_records`` / about ``max_bytes``;
        they count against the bounds until :meth:`release`."""
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
        return out

    def release(self, items: list[T]) -> None:
        """Taken ``items`` are delivered: make room for as many."""
        self._count -= len(items)
        self._bytes -= sum(len(item) for item in items)
        self._space.set()

    async def wait_until_fits(self, size: int) -> None:
        """Return once an item of ``size`` bytes fits (checked, not signalled: no lost wake-up)."""
        while not self.fits(size):
            self._space.clear()
            await self._space.wait()
