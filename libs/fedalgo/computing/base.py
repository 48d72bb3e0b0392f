"""The computing seam: one small interface for a component's data-parallel work.

Components are written against :class:`Computing`, the way FATE's components sit on its computing
``Table``: they cut their rows (or columns) into chunks and hand a module-level function to
:meth:`Computing.map_chunks` (results in chunk order) or :meth:`Computing.reduce_chunks` (results
combined pairwise, in any order: only exact, associative combinations such as products modulo
n^2). Two engines implement it: :class:`~fedalgo.computing.local.LocalComputing` (a process pool
on this machine, the default) and :class:`~fedalgo.computing.spark.SparkComputing` (chunks become
partitions of an RDD on Spark executors; reductions use ``treeReduce``). What a chunk function
computes does not depend on how the rows were cut, so both engines give bit-identical results.

The Paillier loops every vertical component needs are written here once, on top of the two
primitives: encryption (:meth:`Computing.encrypt_raw`), the multi-exponentiation of hetero_lr's
gradient products (:meth:`Computing.multi_exp`) and encrypted histogram sums
(:meth:`Computing.bin_sums`). Work below :attr:`Computing.min_items` items stays in the calling
process (:meth:`Computing.splits`), where it is cheaper than the round trip.

Rows that several calls work on stay where the engine keeps them: :meth:`Computing.distribute`
cuts per-row arrays into partitions once and returns :class:`Rows` (on Spark: a cached RDD on the
executors; locally: the chunks in this process), which later calls map, collect or reduce without
sending the rows again. SecureBoost keeps each tree's ciphertexts there, so its driver holds
neither them nor their limbs.

What reaches an executor is this party's own data and keys (an encryptor's spec includes the
private key): executors are this party's processes or this party's cluster, never a peer's.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import numpy as np

from fedalgo.paillier.encryptor import Encryptor, EncryptorSpec
from fedalgo.paillier.montgomery import Modulus, bin_products
from fedalgo.paillier.vector import multi_exp
from fedalgo.tables import Dataset, Table, dataset_of, read_table
from fedcore import codec

T = TypeVar("T")


class Sliceable(Protocol):
    """Per-row values an engine cuts into chunks: a list, an array, a received
    :class:`fedcore.codec.IntArray` (sliced as received), or any view sliced by rows."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice, /) -> Any: ...


Sliced = Sequence[Sliceable]

# Rows per chunk whose result comes back encoded: the caller receives a few MiB at a time (a
# partition's 500,000 ciphertexts in one result were 260 MB, read whole and then unpickled).
ENCODED_ROWS = 16_384
_CACHE_SIZE = 2  # a 2048-bit encryptor holds about 100 MiB of fixed-base tables
_encryptors: OrderedDict[EncryptorSpec, Encryptor] = OrderedDict()


def _encryptor(spec: EncryptorSpec) -> Encryptor:
    """The encryptor of ``spec``, kept per process: its fixed-base tables are built once."""
    found = _encryptors.get(spec)
    if found is None:
        found = _encryptors[spec] = Encryptor.from_spec(spec)
        while len(_encryptors) > _CACHE_SIZE:
            _encryptors.popitem(last=False)
    return found


def _encrypt_chunk(plaintexts: Sequence[int], spec: EncryptorSpec) -> list[Any]:
    return _encryptor(spec).encrypt_raw(list(plaintexts))


def _encrypt_chunk_encoded(plaintexts: Sequence[int], spec: EncryptorSpec) -> bytes:
    return codec.encode_items([int(c) for c in _encryptor(spec).encrypt_raw(list(plaintexts))])


def _multi_exp_chunk(bases: Sequence[Any], exps: np.ndarray, modulus: Any) -> Any:
    return multi_exp(bases, exps, modulus)


def _mul_mod(a: Any, b: Any, modulus: Any) -> Any:
    return a * b % modulus


def _bin_chunk(values: np.ndarray, bins: np.ndarray, total_bins: int, nsquare: Any) -> list[Any]:
    modulus = Modulus(nsquare)
    return modulus.residues_of(bin_products(values, bins, total_bins, modulus))


def _mul_bins(a: list[Any], b: list[Any], nsquare: Any) -> list[Any]:
    return [x * y % nsquare for x, y in zip(a, b, strict=True)]


def chunk_bounds(count: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` (at most) contiguous ``[start, stop)`` ranges covering ``count`` items."""
    if count == 0:
        return []
    size = math.ceil(count / max(1, min(parts, count)))
    return [(i, min(i + size, count)) for i in range(0, count, size)]


def apply_chunk(fn: Callable[..., T], shared: tuple[Any, ...], chunk: tuple[Any, ...]) -> T:
    """``fn(*chunk, *shared)``: what every engine runs on a chunk (picklable with a partial)."""
    return fn(*chunk, *shared)


def take(values: Sequence[Any] | np.ndarray, positions: np.ndarray) -> Sequence[Any] | np.ndarray:
    """``values[positions]`` for an array, or those items of a list."""
    if isinstance(values, np.ndarray):
        return values[positions]
    return [values[i] for i in positions.tolist()]


def split_by_key(
    chunk: tuple[Any, ...], keys: np.ndarray, spread: int
) -> list[tuple[int, tuple[Any, ...]]]:
    """A chunk (row numbers first) cut by ``keys[row]``: pieces keyed ``key * spread + row %
    spread`` (:meth:`Rows.regroup`)."""
    rows = np.asarray(chunk[0])
    slot = keys[rows].astype(np.int64) * spread + rows % spread
    order = np.argsort(slot, kind="stable")
    cuts = np.flatnonzero(np.diff(slot[order])) + 1
    return [
        (int(slot[group[0]]), tuple(take(values, group) for values in chunk))
        for group in np.split(order, cuts)
        if len(group)
    ]


def merge_pieces(pieces: Sequence[tuple[Any, ...]]) -> tuple[Any, ...]:
    """The pieces of one regrouped partition as one chunk, in row order."""
    rows = np.concatenate([np.asarray(p[0]) for p in pieces])
    order = np.argsort(rows, kind="stable")
    merged: list[Any] = []
    for k in range(len(pieces[0])):
        parts = [p[k] for p in pieces]
        if isinstance(parts[0], np.ndarray):
            merged.append(np.concatenate(parts)[order])
        else:
            flat = [v for part in parts for v in part]
            merged.append([flat[i] for i in order.tolist()])
    return tuple(merged)


class Rows(ABC):
    """Per-row arrays an engine holds, cut into partitions (see :meth:`Computing.distribute`).

    Functions given to :meth:`map`, :meth:`collect` and :meth:`reduce` get one partition's
    arrays (in the order they were distributed) followed by the ``shared`` arguments; they must
    be module-level (they run in other processes, imported by name). The first array is the
    rows' numbers (0..count-1) when rows are to be regrouped.
    """

    def __init__(self, count: int) -> None:
        #: how many rows were distributed
        self.count = count

    @abstractmethod
    def map(self, fn: Callable[..., tuple[Any, ...]], *shared: Any) -> Rows:
        """New rows: ``fn(*partition, *shared)``, a tuple of arrays of the partition's rows."""

    @abstractmethod
    def collect(self, fn: Callable[..., T], *shared: Any) -> list[T]:
        """``fn(*partition, *shared)`` of every partition, in row order."""

    @abstractmethod
    def reduce(self, fn: Callable[..., T], combine: Callable[[T, T], T], *shared: Any) -> T:
        """Every partition's ``fn`` result combined pairwise by ``combine`` (in any order)."""

    @abstractmethod
    def release(self) -> None:
        """Let the engine drop these rows. Idempotent."""

    @abstractmethod
    def regroup(self, keys: np.ndarray, groups: int) -> Rows:
        """The same rows, gathered by ``keys`` (one int in ``[0, groups)`` per row number):
        group g is then :meth:`group_reduce`'s ``g``, its rows spread over the executors."""

    @abstractmethod
    def group_reduce(
        self, group: int, fn: Callable[..., T], combine: Callable[[T, T], T], *shared: Any
    ) -> T:
        """Like :meth:`reduce`, over the rows of one group of :meth:`regroup` only."""


class LocalRows(Rows):
    """Rows kept in this process, a chunk per worker; calls run on the computing's workers."""

    def __init__(self, computing: Computing, parts: list[tuple[Any, ...]], count: int) -> None:
        super().__init__(count)
        self._computing = computing
        self._parts = parts

    def _results(self, fn: Callable[..., T], shared: tuple[Any, ...]) -> list[T]:
        call = functools.partial(apply_chunk, fn, shared)
        if self._computing.splits(self.count):
            return self._computing.map_parts(call, self._parts)
        return [call(part) for part in self._parts]

    def map(self, fn: Callable[..., tuple[Any, ...]], *shared: Any) -> Rows:
        return LocalRows(self._computing, self._results(fn, shared), self.count)

    def collect(self, fn: Callable[..., T], *shared: Any) -> list[T]:
        return self._results(fn, shared)

    def reduce(self, fn: Callable[..., T], combine: Callable[[T, T], T], *shared: Any) -> T:
        return functools.reduce(combine, self._results(fn, shared))

    def release(self) -> None:
        self._parts = []

    def regroup(self, keys: np.ndarray, groups: int) -> Rows:
        spread = self._computing.executors
        pieces: list[list[tuple[Any, ...]]] = [[] for _ in range(groups * spread)]
        for part in self._parts:
            for slot, piece in split_by_key(part, keys, spread):
                pieces[slot].append(piece)
        parts = [merge_pieces(p) if p else () for p in pieces]
        return LocalRows(self._computing, parts, self.count)

    def group_reduce(
        self, group: int, fn: Callable[..., T], combine: Callable[[T, T], T], *shared: Any
    ) -> T:
        spread = self._computing.executors
        parts = [p for p in self._parts[group * spread : (group + 1) * spread] if p]
        size = sum(len(p[0]) for p in parts)
        call = functools.partial(apply_chunk, fn, shared)
        if self._computing.splits(size):
            return functools.reduce(combine, self._computing.map_parts(call, parts))
        return functools.reduce(combine, [call(part) for part in parts])


class Computing(ABC):
    """Where a component's data-parallel work runs (see the module doc)."""

    #: ``local`` or ``spark``: reported by the step (log and metric) and by the benchmarks.
    name: str
    #: where the work runs: ``local`` or the Spark master URL.
    master: str

    def __init__(self, *, min_items: int = 1024) -> None:
        if min_items < 1:
            raise ValueError(f"min_items must be >= 1, got {min_items}")
        self.min_items = min_items

    @property
    @abstractmethod
    def executors(self) -> int:
        """How many chunks run at once (worker processes, or Spark executor cores)."""

    @abstractmethod
    def map_chunks(
        self, fn: Callable[..., T], sliced: Sliced, *shared: Any, min_chunks: int = 1
    ) -> list[T]:
        """``fn(*(s[chunk] for s in sliced), *shared)`` for each chunk of rows, in order: one
        chunk per executor, or ``min_chunks`` if more (smaller results to receive at a time).

        ``fn`` must be a module-level function: it runs in other processes, imported by name.
        """

    def reduce_chunks(
        self, fn: Callable[..., T], combine: Callable[[T, T], T], sliced: Sliced, *shared: Any
    ) -> T:
        """Every chunk's ``fn`` result, combined pairwise with ``combine`` (in any order)."""
        return functools.reduce(combine, self.map_chunks(fn, sliced, *shared))

    def map_parts(
        self, fn: Callable[[tuple[Any, ...]], T], parts: list[tuple[Any, ...]]
    ) -> list[T]:
        """``fn(part)`` for each part on the workers, in order (what :class:`LocalRows` uses)."""
        return [fn(part) for part in parts]

    def distribute(self, sliced: Sliced) -> Rows:
        """Per-row arrays (all of one length), cut into partitions the engine keeps."""
        count = len(sliced[0])
        bounds = chunk_bounds(count, self.executors) or [(0, 0)]
        return LocalRows(self, [tuple(s[a:b] for s in sliced) for a, b in bounds], count)

    @abstractmethod
    def close(self) -> None:
        """Release the workers (or the Spark session this object started). Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def splits(self, count: int) -> bool:
        """Whether ``count`` items are worth sending to the workers."""
        return self.executors > 1 and count >= self.min_items

    def stage_timings(self) -> dict[str, dict[str, float | int]]:
        """What the engine's stages took, per kind of work (Spark's; none for a process pool)."""
        return {}

    def describe(self) -> dict[str, Any]:
        """What the step reports about its engine (logged, and a metric on the dashboard)."""
        return {"engine": self.name, "master": self.master, "executors": self.executors}

    # -- input -------------------------------------------------------------------------------

    def read_table(self, location: str) -> Table:
        """A CSV table from a local path (``file://`` URIs too); Spark reads other URIs."""
        if location.startswith("file://"):
            location = location[len("file://") :]
        elif "://" in location:
            raise ValueError(
                f"the {self.name} engine reads local files only, not {location.split(':')[0]}:// "
                "(give the step a spark-master-name to read it with Spark)"
            )
        return read_table(location)

    def read_dataset(self, location: str, *, with_label: bool) -> Dataset:
        """A CSV table as numeric data (:func:`fedalgo.tables.dataset_of`)."""
        return dataset_of(self.read_table(location), location, with_label=with_label)

    # -- Paillier ----------------------------------------------------------------------------

    def encrypt_raw(self, spec: EncryptorSpec, plaintexts: list[int]) -> list[Any]:
        """What ``Encryptor.from_spec(spec).encrypt_raw(plaintexts)`` returns, on the workers."""
        parts = self.map_chunks(_encrypt_chunk, [plaintexts], spec)
        return [c for part in parts for c in part]

    def encrypt_encoded(self, spec: EncryptorSpec, plaintexts: list[int]) -> codec.EncodedArray:
        """:meth:`encrypt_raw` already encoded for the wire, each worker encoding its share: a
        party that only sends its ciphertexts holds them once, as the bytes it sends, never as
        Python ints."""
        chunks = math.ceil(len(plaintexts) / ENCODED_ROWS)
        parts = self.map_chunks(_encrypt_chunk_encoded, [plaintexts], spec, min_chunks=chunks)
        return codec.EncodedArray(len(plaintexts), parts)

    def multi_exp(self, bases: list[Any], exps: np.ndarray, modulus: Any) -> Any:
        """``prod(b ** e) mod modulus``, each worker folding a share of the bases."""
        combine = functools.partial(_mul_mod, modulus=modulus)
        return self.reduce_chunks(_multi_exp_chunk, combine, [bases, exps], modulus)

    def bin_sums(
        self, values: np.ndarray, flat_bins: np.ndarray, total_bins: int, nsquare: Any
    ) -> list[Any]:
        """Per flat bin, the product mod n^2 of the rows' residues (``values``: limbs, one row
        per ciphertext) that ``flat_bins`` puts there; each worker folds a share of the rows."""
        combine = functools.partial(_mul_bins, nsquare=nsquare)
        return self.reduce_chunks(_bin_chunk, combine, [values, flat_bins], total_bins, nsquare)
