"""Feeds the dashboard's tables from this party's Kafka, and tells listeners when a view changed.

The dashboard reads ``fl.status``, ``fl.results``, ``fl.logs``, ``fl.in.ctl`` and ``fl.tasks`` as
the consumer group ``dashboard-<party>``: a batch of records (what has arrived, up to
:data:`BATCH_RECORDS`) is written to the database in one transaction
(:class:`~dashboard.store.Store`), and only then are its offsets committed, so a restarted
dashboard goes on where it stopped and reads again at most the batch it was writing (the writes
are upserts, and log lines are recognised by envelope id). Its history lives in the database, not in
Kafka's retention. Where records come from is behind :class:`EnvelopeSource`; :class:`KafkaSource`
is the real one, :class:`MemorySource` an in-memory log with a committed position for unit tests.

Each record is applied inside a guard: one whose body does not fit its :mod:`fedcore.messages`
model, or that cannot be written (the batch is then written again one envelope at a time to find
it), is counted and handed to :meth:`EnvelopeSource.set_aside` (``fl.dead`` on Kafka, with its
reason), and the consumer goes on. A lost connection (Kafka, or the database) is not the record's
fault: nothing is set aside or committed, and the batch is read again after a pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from dashboard.store import Outcome, Store
from dashboard.views import JOB_STATUS, LOG, METRIC, TASK_RUN, TASK_STATUS
from fedcore import topics
from fedcore.bus import Bus, Subscription, ensure_topics
from fedcore.deadletter import DeadLetters, bounded
from fedcore.envelope import Envelope
from fedcore.messages import describe, parse_body

log = logging.getLogger(__name__)

# fl.in.ctl carries the other parties' task states, so each step shows every party's state;
# fl.tasks this party's component and arguments of each step (its parameters and dependencies).
TOPICS: Final = (topics.STATUS, topics.RESULTS, topics.LOGS, topics.IN_CTL, topics.TASKS)
# what the store folds in: each body is held to its fedcore.messages model first
VALIDATED: Final = frozenset({JOB_STATUS, TASK_STATUS, TASK_RUN, METRIC, LOG})
BATCH_RECORDS: Final = 500
SOURCE: Final = "|".join(TOPICS)


def is_transient(exc: BaseException) -> bool:
    """Would the same batch be written once Kafka or the database is back?"""
    if isinstance(exc, KafkaError | OperationalError | ConnectionError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class Records(Protocol):
    """An open subscription: batches of envelopes; :meth:`commit` once a batch is stored."""

    def __aiter__(self) -> AsyncIterator[list[Envelope]]: ...

    async def commit(self) -> None: ...


class EnvelopeSource(Protocol):
    """Where envelopes come from: each ``open()`` goes on from the last commit."""

    def open(self, on_dead: Callable[[], object]) -> AbstractAsyncContextManager[Records]:
        """``on_dead()`` is called for each record the source itself set aside (one that is not
        an envelope: it does not decode, breaks the chunk bounds, or its headers disagree)."""
        ...

    async def set_aside(self, env: Envelope, reason: str) -> None:
        """Keep an envelope the dashboard could not apply, with the reason (while open)."""
        ...


class _KafkaRecords:
    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    def __aiter__(self) -> AsyncIterator[list[Envelope]]:
        return self._subscription.batches(max_records=BATCH_RECORDS)

    async def commit(self) -> None:
        await self._subscription.commit()


class KafkaSource:
    """This party's Kafka topics, read by the consumer group ``group_id``."""

    def __init__(
        self,
        bootstrap: str,
        *,
        client_id: str,
        group_id: str,
        topic_names: Sequence[str] = TOPICS,
    ):
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._group_id = group_id
        self._topics = list(topic_names)
        self._dead: DeadLetters | None = None

    @asynccontextmanager
    async def open(self, on_dead: Callable[[], object]) -> AsyncIterator[Records]:
        await ensure_topics(self._bootstrap, self._topics)
        async with Bus(self._bootstrap, self._client_id) as bus:
            self._dead = DeadLetters(bus, "dashboard")
            records_dead = DeadLetters(bus, "dashboard", on_dead=on_dead)
            try:
                async with bus.subscribe(
                    self._topics, group_id=self._group_id, dead_letters=records_dead
                ) as subscription:
                    yield _KafkaRecords(subscription)
            finally:
                self._dead = None

    async def set_aside(self, env: Envelope, reason: str) -> None:
        if self._dead is None:
            raise RuntimeError("KafkaSource.set_aside outside open()")
        await self._dead.put_envelope(env, reason, source=SOURCE)


class MemorySource:
    """An in-memory log of envelopes read like a consumer group (for tests): each ``open()``
    starts at the committed position."""

    def __init__(self, envelopes: Sequence[Envelope] = ()) -> None:
        self._log: list[Envelope] = list(envelopes)
        self._appended = asyncio.Event()
        self.committed = 0
        self.set_aside_envelopes: list[tuple[Envelope, str]] = []

    async def set_aside(self, env: Envelope, reason: str) -> None:
        self.set_aside_envelopes.append((env, reason))

    def publish(self, env: Envelope) -> None:
        self._log.append(env)
        self._appended.set()

    @asynccontextmanager
    async def open(self, on_dead: Callable[[], object]) -> AsyncIterator[Records]:
        yield _MemoryRecords(self)  # only envelopes are published here: none is set aside

    async def follow(self, start: int) -> AsyncIterator[tuple[int, list[Envelope]]]:
        """From ``start``: each batch of what has arrived, with the position after it."""
        position = start
        while True:
            if position < len(self._log):
                batch = self._log[position : position + BATCH_RECORDS]
                position += len(batch)
                yield position, batch
                continue
            self._appended.clear()
            await self._appended.wait()


class _MemoryRecords:
    def __init__(self, source: MemorySource) -> None:
        self._source = source
        self._handed = source.committed

    async def _batches(self) -> AsyncIterator[list[Envelope]]:
        async for position, batch in self._source.follow(self._handed):
            self._handed = position
            yield batch

    def __aiter__(self) -> AsyncIterator[list[Envelope]]:
        return self._batches()

    async def commit(self) -> None:
        self._source.committed = self._handed


class Changes:
    """A version number that listeners can wait on; :meth:`close` releases them for good."""

    def __init__(self) -> None:
        self.version = 0
        self.closed = False
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        self._event.set()
        self._event = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    async def wait_past(self, seen: int, timeout_s: float) -> int:
        """The version once it differs from ``seen``, or the current one after ``timeout_s``."""
        if self.version == seen and not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout_s)
        return self.version


@dataclass
class ConsumerStatus:
    connected: bool = False
    stopped: bool = False
    records: int = 0  # envelopes read and stored (or set aside) since the start
    applied: int = 0  # envelopes that changed a job's rows
    skipped: int = 0  # envelopes of a known type whose body lacked what the type needs
    set_aside: int = 0  # records not decoded or not applied (on fl.dead)
    last_record_at: float | None = None
    error: str | None = None


class Consumer:
    """Runs the source into the store until stopped; reconnects after a lost connection."""

    def __init__(
        self,
        source: EnvelopeSource,
        store: Store,
        changes: Changes,
        *,
        retry_s: float = 2.0,
    ) -> None:
        self._source = source
        self._store = store
        self._changes = changes
        self._retry_s = retry_s
        self._task: asyncio.Task[None] | None = None
        self.status = ConsumerStatus()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="dashboard-consumer")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Cancel the loop and wait (bounded) for the subscription to close; idempotent."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=timeout_s)
        if not done:
            log.warning("dashboard consumer did not stop within %.1f s", timeout_s)
        self.status.connected = False
        self.status.stopped = True

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
                return
            except Exception as exc:  # nothing may end the consumer: it reconnects and reads on
                self.status.connected = False
                self.status.error = bounded(f"{type(exc).__name__}: {exc}")
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(
                    level,
                    "dashboard consumer stopped (%s); reconnecting in %.1f s",
                    self.status.error,
                    self._retry_s,
                )
                await asyncio.sleep(self._retry_s)

    async def _consume(self) -> None:
        async with self._source.open(on_dead=self._count_set_aside) as records:
            self.status.connected = True
            self.status.error = None
            async for batch in records:
                applied = await self._write(batch)
                await records.commit()
                self.status.records += len(batch)
                self.status.last_record_at = time.time()
                if applied:
                    self._changes.notify()

    async def _set_aside(self, env: Envelope, reason: str) -> None:
        self._count_set_aside()
        await self._source.set_aside(env, bounded(reason))

    def _count_set_aside(self) -> None:
        self.status.set_aside += 1

    async def _write(self, batch: list[Envelope]) -> int:
        """Store a batch; the number of envelopes that changed a job's rows."""
        valid = []
        for env in batch:
            try:
                if env.type in VALIDATED:
                    parse_body(env)
            except ValidationError as exc:
                await self._set_aside(env, f"dashboard refuses {env.type}: {describe(exc)}")
                continue
            valid.append(env)
        try:
            return self._count(await asyncio.to_thread(self._store.apply, valid))
        except Exception as exc:  # the guard: one record must never stop the dashboard
            if is_transient(exc):
                raise
        # Some envelope cannot be written: one transaction each finds it.
        applied = 0
        for env in valid:
            try:
                applied += self._count(await asyncio.to_thread(self._store.apply, [env]))
            except Exception as exc:
                if is_transient(exc):
                    raise
                reason = f"dashboard cannot apply {env.type}: {_reason(exc)}"
                await self._set_aside(env, reason)
        return applied

    def _count(self, outcome: Outcome) -> int:
        self.status.applied += outcome.applied
        self.status.skipped += outcome.skipped
        return outcome.applied


def _reason(exc: BaseException) -> str:
    """Why an envelope cannot be written, without the SQL parameters a database error carries
    (the received values)."""
    if isinstance(exc, DBAPIError):
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else ""
        return f"the database refused it ({type(exc.orig).__name__}): {first}"
    return f"{type(exc).__name__}: {exc}"
