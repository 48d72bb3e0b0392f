"""A bounded process pool for long Paillier vectors (encryption, multi-exponentiation).

Python big-integer loops hold the GIL, so only processes use more than one core. Workers are
spawned (never forked: the caller may be running threads) on first use, at most ``max_workers``
(default: the number of cores), and stopped by :meth:`PaillierPool.close` or on leaving the
``with`` block. Each worker keeps the last few encryptors it was asked for, so a fixed-base table
is built once per worker and key, not once per call. Work below ``min_items`` stays in the
calling process (see :meth:`PaillierPool.splits`), where it is cheaper than the round trip.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from fedalgo.paillier.encryptor import Encryptor, EncryptorSpec
from fedalgo.paillier.vector import multi_exp

_CACHE_SIZE = 2  # a 2048-bit encryptor holds about 100 MiB of fixed-base tables
T = TypeVar("T")
_encryptors: OrderedDict[EncryptorSpec, Encryptor] = OrderedDict()


def _encryptor(spec: EncryptorSpec) -> Encryptor:
    found = _encryptors.get(spec)
    if found is None:
        found = _encryptors[spec] = Encryptor.from_spec(spec)
        while len(_encryptors) > _CACHE_SIZE:
            _encryptors.popitem(last=False)
    return found


def _encrypt_chunk(plaintexts: list[int], spec: EncryptorSpec) -> list[Any]:
    return _encryptor(spec).encrypt_raw(plaintexts)


def _multi_exp_chunk(bases: list[Any], exps: np.ndarray, modulus: Any) -> Any:
    return multi_exp(bases, exps, modulus)


class PaillierPool:
    """Spreads long vectors over worker processes; use as a context manager, or call close()."""

    def __init__(self, max_workers: int | None = None, *, min_items: int = 1024) -> None:
        cores = os.cpu_count() or 1
        workers = cores if max_workers is None else max_workers
        if workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        if min_items < 1:
            raise ValueError(f"min_items must be >= 1, got {min_items}")
        self.max_workers = min(workers, cores)
        self.min_items = min_items
        self._executor: Executor | None = None
        self._closed = False

    def __enter__(self) -> PaillierPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (waiting for running tasks, dropping queued ones). Idempotent."""
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pool(self) -> Executor:
        if self._closed:
            raise RuntimeError("the Paillier pool is closed")
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

    def splits(self, count: int) -> bool:
        """Whether ``count`` items are worth sending to the workers."""
        return self.max_workers > 1 and count >= self.min_items

    def map_chunks(
        self, fn: Callable[..., T], sliced: Sequence[Sequence[Any] | np.ndarray], *shared: Any
    ) -> list[T]:
        """``fn(*(s[chunk] for s in sliced), *shared)`` for one chunk of rows per worker, in order.

        ``fn`` must be a module-level function (workers are spawned and import it by name).
        """
        pool = self._pool()
        count = len(sliced[0])
        size = math.ceil(count / self.max_workers)
        futures = [
            pool.submit(fn, *(s[i : i + size] for s in sliced), *shared)
            for i in range(0, count, size)
        ]
        return [f.result() for f in futures]

    def encrypt_raw(self, spec: EncryptorSpec, plaintexts: list[int]) -> list[Any]:
        """What ``Encryptor.from_spec(spec).encrypt_raw(plaintexts)`` returns, on the workers."""
        parts = self.map_chunks(_encrypt_chunk, [plaintexts], spec)
        return [c for part in parts for c in part]

    def multi_exp(self, bases: list[Any], exps: np.ndarray, modulus: Any) -> Any:
        """``prod(b ** e) mod modulus``, each worker folding a share of the bases."""
        result = 1
        for part in self.map_chunks(_multi_exp_chunk, [bases, exps], modulus):
            result = result * part % modulus
        return result
