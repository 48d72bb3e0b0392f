"""The ``local`` engine: a bounded process pool on this machine (the default).

Python big-integer loops hold the GIL, so only processes use more than one core. Workers are
spawned (never forked: the caller may be running threads) on first use, at most ``max_workers``
(default: the number of cores), and stopped by :meth:`LocalComputing.close` or on leaving the
``with`` block. Each worker keeps the last few encryptors it was asked for, so a fixed-base table
is built once per worker and key, not once per call.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from fedalgo.computing.base import Computing, Sliced, T, chunk_bounds


class LocalComputing(Computing):
    """Spreads chunks over worker processes of this machine."""

    name = "local"
    master = "local"

    def __init__(self, max_workers: int | None = None, *, min_items: int = 1024) -> None:
        super().__init__(min_items=min_items)
        cores = os.cpu_count() or 1
        workers = cores if max_workers is None else max_workers
        if workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = min(workers, cores)
        self._executor: Executor | None = None
        self._closed = False

    @property
    def executors(self) -> int:
        return self.max_workers

    def close(self) -> None:
        """Stop the workers (waiting for running tasks, dropping queued ones). Idempotent."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pool(self) -> Executor:
        if self._closed:
            raise RuntimeError("the local computing pool is closed")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

    def map_chunks(
        self, fn: Callable[..., T], sliced: Sliced, *shared: Any, min_chunks: int = 1
    ) -> list[T]:
        pool = self._pool()
        futures = [
            pool.submit(fn, *(s[a:b] for s in sliced), *shared)
            for a, b in chunk_bounds(len(sliced[0]), max(min_chunks, self.max_workers))
        ]
        return [f.result() for f in futures]

    def map_parts(
        self, fn: Callable[[tuple[Any, ...]], T], parts: list[tuple[Any, ...]]
    ) -> list[T]:
        pool = self._pool()
        return [f.result() for f in [pool.submit(fn, part) for part in parts]]
