"""The ``spark`` engine: chunks run as partitions of an RDD on Spark executors.

Each call cuts its rows into one chunk per executor core (``defaultParallelism``), makes them the
partitions of an RDD, runs the chunk function there (the C Paillier loops of
:mod:`fedalgo.paillier.montgomery` run in the executors' Python workers, which import Tessera from
the same virtualenv: ``spark.pyspark.python``) and collects the results in order, or combines
them with ``treeReduce`` (a tree aggregation: executors multiply partial products pairwise, so the
driver receives one result, not one per partition). Python workers are reused
(``spark.python.worker.reuse``), so an encryptor's fixed-base tables are built once per worker.

Serialisation: chunks and results (numpy arrays, gmpy2 integers) travel between the driver and
its executors with Spark's own pickle-based serialiser. That is inside one party: the driver,
executors and their Python workers are this party's processes (or its own cluster); nothing a
peer sent is ever unpickled — values from peers are decoded by the safe codec and validated
before a component hands them to the engine.

Inputs that are URIs (``hdfs://``, ``s3a://``, ``file://``) are read by Spark: CSV with a header
(every cell kept as text, as the local reader does) or Parquet (``.parquet``).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedalgo.computing.base import (
    Computing,
    Rows,
    Sliced,
    T,
    apply_chunk,
    chunk_bounds,
    merge_pieces,
    split_by_key,
)
from fedalgo.errors import DataError
from fedalgo.tables import ID_COLUMN, LABEL_COLUMN, Dataset, Table, dataset_of

APP_NAME = "tessera-step"
MAX_LABEL = 60
DISTRIBUTE_ROWS = 16_384
PERIODIC_GC = "-XX:G1PeriodicGCInterval=30000 -XX:MinHeapFreeRatio=10 -XX:MaxHeapFreeRatio=30"


def _parse_part(
    index: int, rows: Iterable[Any], header: list[str], location: str, with_label: bool
) -> Iterator[tuple[Any, ...]]:
    """One partition of a CSV or Parquet frame as numeric data, parsed where it was read.

    Yields ``(index, ids, x, y, error)``: an error (the reader's message, its line numbers
    counted within the partition) instead of raising, so the driver reports it as a DataError.
    """
    table = Table(header, [["" if v is None else str(v) for v in row] for row in rows])
    try:
        data = dataset_of(table, f"{location} (part {index})", with_label=with_label)
    except DataError as exc:
        yield index, [], None, None, str(exc)
        return
    yield index, data.ids, data.x, data.y, ""


def _key_of(slot: int) -> int:
    return slot


def _merged(pieces: Iterable[tuple[int, tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    chunks = [piece for _, piece in pieces]
    if chunks:
        yield merge_pieces(chunks)


def _run_part(
    fn: Callable[..., T], shared: tuple[Any, ...], chunks: Iterable[tuple[Any, ...]]
) -> list[T]:
    return [fn(*chunk, *shared) for chunk in chunks]


@dataclass
class StageTiming:
    """What the Spark jobs of one kind of work took in a step: wall seconds (from the driver's
    call to its result), and the jobs, stages and tasks the status tracker counted."""

    seconds: float = 0.0
    jobs: int = 0
    stages: int = 0
    tasks: int = 0


class _Timings:
    """Every Spark action of one session, labelled by the work it does (the chunk function's
    name) and counted through the SparkContext's status tracker."""

    def __init__(self, sc: Any) -> None:
        self._sc = sc
        self._lock = threading.Lock()
        self.by_label: dict[str, StageTiming] = {}

    @contextlib.contextmanager
    def action(self, fn: Callable[..., Any]) -> Iterator[None]:
        label = getattr(fn, "__name__", "work").strip("_")[:MAX_LABEL]
        group = f"tessera-{uuid.uuid4().hex}"  # unique in the context's tracker, across users
        # Job groups are per thread (pyspark pins Python threads to JVM threads).
        self._sc.setJobGroup(group, label)
        started = time.monotonic()
        try:
            yield
        finally:
            seconds = time.monotonic() - started
            self._sc.setLocalProperty("spark.jobGroup.id", None)
            tracker = self._sc.statusTracker()
            jobs = tracker.getJobIdsForGroup(group)
            stages = {s for j in jobs if (job := tracker.getJobInfo(j)) for s in job.stageIds}
            tasks = sum(info.numTasks for s in stages if (info := tracker.getStageInfo(s)))
            with self._lock:
                timing = self.by_label.setdefault(label, StageTiming())
                timing.seconds += seconds
                timing.jobs += len(jobs)
                timing.stages += len(stages)
                timing.tasks += tasks

    def snapshot(self) -> dict[str, dict[str, float | int]]:
        with self._lock:
            return {
                label: {
                    "seconds": round(t.seconds, 3),
                    "jobs": t.jobs,
                    "stages": t.stages,
                    "tasks": t.tasks,
                }
                for label, t in self.by_label.items()
            }


def _file_uri(path: str) -> str:
    """A local path as the URI Spark reads it by, literally: Hadoop takes ``[]{}*?`` and ``\\``
    in a path for a glob (a directory named ``out-local[*]`` was "not found")."""
    return "file://" + re.sub(r"([\[\]{}*?\\])", r"\\\1", os.path.abspath(path))


def _received_in_parts(rdd: Any) -> list[Any]:
    """``rdd``'s elements in order, computed in parallel, then received one partition at a time:
    no job's results pass ``spark.driver.maxResultSize`` (1 GiB by default; 5M ciphertexts are
    2.6 GB, a parsed 5M x 20 table 0.9 GB) and the driver's JVM never holds them all at once
    beside the copy it serves."""
    from pyspark import StorageLevel

    rdd.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rdd.count()
        return list(rdd.toLocalIterator())
    finally:
        rdd.unpersist()


def _kept(rdd: Any) -> Any:
    """``rdd`` persisted and locally checkpointed (computed now), as a plain RDD: pyspark's
    mapped RDD keeps its parent (and so the parent's JVM RDD, with whatever ``parallelize``
    copied into the driver's heap) for as long as it lives, and the checkpoint makes the parent
    unnecessary."""
    from pyspark import RDD

    rdd.persist()
    rdd.localCheckpoint()
    rdd.count()
    return RDD(rdd._jrdd, rdd.ctx, rdd._jrdd_deserializer)


class SparkRows(Rows):
    """Rows as an RDD of partitions (one chunk tuple each): as distributed, the parallelised
    RDD; as mapped or regrouped, cached and locally checkpointed on the executors."""

    def __init__(self, rdd: Any, count: int, timings: _Timings) -> None:
        super().__init__(count)
        self._rdd: Any = rdd
        self._timings = timings

    def map(self, fn: Callable[..., tuple[Any, ...]], *shared: Any) -> Rows:
        with self._timings.action(fn):
            mapped = _kept(self._rdd.map(functools.partial(apply_chunk, fn, shared)))
        return SparkRows(mapped, self.count, self._timings)

    def collect(self, fn: Callable[..., T], *shared: Any) -> list[T]:
        with self._timings.action(fn):
            return list(self._rdd.map(functools.partial(apply_chunk, fn, shared)).collect())

    def reduce(self, fn: Callable[..., T], combine: Callable[[T, T], T], *shared: Any) -> T:
        with self._timings.action(fn):
            mapped = self._rdd.map(functools.partial(apply_chunk, fn, shared))
            return mapped.treeReduce(combine, depth=2)  # type: ignore[no-any-return]

    def release(self) -> None:
        if self._rdd is None:
            return
        self._rdd.unpersist()
        self._rdd = None
        # py4j's proxies of the JVM objects sit in reference cycles (a proxy caches its
        # methods, which point back at it), so the JVM keeps the RDD, and the rows parallelize
        # copied into its heap, until Python's cycle collector runs: a rare event in a driver
        # that allocates little. Left to it, a 1M-row tree's 0.6 GB outlived the tree.
        gc.collect()

    def regroup(self, keys: np.ndarray, groups: int) -> Rows:
        spread = int(self._rdd.context.defaultParallelism)
        cut = functools.partial(split_by_key, keys=keys, spread=spread)
        with self._timings.action(self.regroup):
            shuffled = self._rdd.flatMap(cut).partitionBy(groups * spread, _key_of)
            grouped = _kept(shuffled.mapPartitions(_merged, preservesPartitioning=True))
        return SparkRows(grouped, self.count, self._timings)

    def group_reduce(
        self, group: int, fn: Callable[..., T], combine: Callable[[T, T], T], *shared: Any
    ) -> T:
        spread = int(self._rdd.context.defaultParallelism)
        parts = list(range(group * spread, (group + 1) * spread))
        with self._timings.action(fn):
            results = self._rdd.context.runJob(
                self._rdd, functools.partial(_run_part, fn, shared), parts
            )
        return functools.reduce(combine, results)


def session_conf(master: str, conf: Mapping[str, str]) -> dict[str, str]:
    """The Spark configuration of a step's session: ``conf`` over Tessera's defaults."""
    defaults = {
        "spark.app.name": APP_NAME,
        "spark.master": master,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": "true",
        # Executors run this interpreter, so they import the same Tessera and C extension.
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        # A JVM keeps the heap it once grew to: an idle one (a party waiting on its peer) is
        # collected every 30 s, and G1 then returns what is free (JEP 346). A 5M-row host's
        # driver held 8.8 GB through the guest's training, 0.7 GB after one collection.
        "spark.driver.extraJavaOptions": PERIODIC_GC,
        "spark.executor.extraJavaOptions": PERIODIC_GC,
    }
    if master.startswith("local"):
        # In a sandbox only loopback exists and the host name does not resolve.
        defaults["spark.driver.host"] = "127.0.0.1"
        defaults["spark.driver.bindAddress"] = "127.0.0.1"
    elif os.environ.get("SPARK_DRIVER_HOST"):
        # Where the executors reach this driver (a step pod's address, set by the task_engine).
        defaults["spark.driver.host"] = os.environ["SPARK_DRIVER_HOST"]
    return {**defaults, **conf}


class SparkComputing(Computing):
    """Runs chunks on a Spark session's executors (see the module doc)."""

    name = "spark"

    def __init__(self, session: Any, *, owned: bool = False, min_items: int = 1024) -> None:
        super().__init__(min_items=min_items)
        self._session = session
        self._sc = session.sparkContext
        self._owned = owned
        self._closed = False
        self.master = str(self._sc.master)
        self._timings = _Timings(self._sc)

    @classmethod
    def start(
        cls, master: str, conf: Mapping[str, str] | None = None, *, min_items: int = 1024
    ) -> SparkComputing:
        """Start a Spark session on ``master`` (``local[*]``, ``spark://host:port``, ...)."""
        # Imported here: only a step that asked for Spark pays for pyspark and its JVM.
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder
        for key, value in session_conf(master, conf or {}).items():
            builder = builder.config(key, value)
        session = builder.getOrCreate()
        session.sparkContext.setLogLevel("WARN")
        return cls(session, owned=True, min_items=min_items)

    @property
    def executors(self) -> int:
        return int(self._sc.defaultParallelism)

    def close(self) -> None:
        if self._owned and not self._closed:
            self._session.stop()
        self._closed = True

    def _rdd(self, sliced: Sliced, parts: int = 0) -> Any:
        if self._closed:
            raise RuntimeError("the Spark session is closed")
        bounds = chunk_bounds(len(sliced[0]), max(parts, self.executors))
        chunks = [tuple(s[a:b] for s in sliced) for a, b in bounds]
        return self._sc.parallelize(chunks, max(1, len(chunks)))

    def stage_timings(self) -> dict[str, dict[str, float | int]]:
        """Per kind of work (the chunk function's name): seconds, jobs, stages and tasks, for
        the step's ``spark_stages`` metric (the dashboard shows it with the task)."""
        return self._timings.snapshot()

    def map_chunks(
        self, fn: Callable[..., T], sliced: Sliced, *shared: Any, min_chunks: int = 1
    ) -> list[T]:
        with self._timings.action(fn):
            mapped = self._rdd(sliced, min_chunks).map(functools.partial(apply_chunk, fn, shared))
            if min_chunks <= 1:
                return list(mapped.collect())
            results = _received_in_parts(mapped)
        del mapped
        gc.collect()  # the input parallelize copied into the JVM may go now (SparkRows.release)
        return results

    def reduce_chunks(
        self, fn: Callable[..., T], combine: Callable[[T, T], T], sliced: Sliced, *shared: Any
    ) -> T:
        with self._timings.action(fn):
            mapped = self._rdd(sliced).map(functools.partial(apply_chunk, fn, shared))
            return mapped.treeReduce(combine, depth=2)  # type: ignore[no-any-return]

    def distribute(self, sliced: Sliced) -> Rows:
        count = len(sliced[0])
        # Partitions of at most DISTRIBUTE_ROWS rows: a parallelized partition travels inside
        # its task, and the driver JVM serialises each task whole (a 1M-row tree's ciphertexts
        # in two tasks of 330 MB ran a 2 GiB driver heap out of memory). Not cached: the driver's
        # JVM holds what parallelize copied for as long as the RDD lives anyway, so a cached copy
        # would be a second one (in the same heap, on local[N]); a pass over them ships each
        # partition with its task, and what is kept is what components map them to.
        with self._timings.action(self.distribute):
            rdd = self._rdd(sliced, math.ceil(count / DISTRIBUTE_ROWS))
        return SparkRows(rdd, count, self._timings)

    def _frame(self, location: str) -> tuple[Any, list[str]]:
        reader = self._session.read
        if location.rstrip("/").endswith(".parquet"):
            frame = reader.parquet(location)
        else:
            frame = reader.option("header", "true").option("inferSchema", "false").csv(location)
        header = [str(c).strip() for c in frame.columns]
        if len(set(header)) != len(header):
            raise DataError(f"{location}: duplicate column names in {header}")
        return frame, header

    def _reads(self, location: str) -> bool:
        """Whether Spark reads ``location``: any URI; a local path only on a local master
        (a cluster's executors do not see the step's files)."""
        return "://" in location or self.master.startswith("local")

    def read_table(self, location: str) -> Table:
        if "://" not in location:
            return super().read_table(location)
        frame, header = self._frame(location)
        rows = [["" if v is None else str(v) for v in row] for row in frame.collect()]
        return Table(header, rows)

    def read_dataset(self, location: str, *, with_label: bool) -> Dataset:
        """Parsed on the executors: the driver gets ids and numbers, never the text."""
        if not self._reads(location):
            return super().read_dataset(location, with_label=with_label)
        uri = location if "://" in location else _file_uri(location)
        frame, header = self._frame(uri)
        parse = functools.partial(
            _parse_part, header=header, location=location, with_label=with_label
        )
        with self._timings.action(_parse_part):
            parts = _received_in_parts(frame.rdd.mapPartitionsWithIndex(parse))
        parts.sort(key=lambda p: p[0])
        for _, _, _, _, error in parts:
            if error:
                raise DataError(error)
        if not parts:  # no rows: the local reader gives the header's columns and no data
            return dataset_of(Table(header, []), location, with_label=with_label)
        return Dataset(
            ids=[i for p in parts for i in p[1]],
            features=[h for h in header if h not in (ID_COLUMN, LABEL_COLUMN)],
            x=np.concatenate([p[2] for p in parts]),
            y=np.concatenate([p[3] for p in parts]) if with_label else None,
            has_label_column=LABEL_COLUMN in header,
        )
