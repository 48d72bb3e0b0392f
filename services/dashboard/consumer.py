"""Feeds the aggregator from this party's Kafka, and tells listeners when a view changed.

The dashboard keeps no database: it reads ``fl.status``, ``fl.results``, ``fl.logs``,
``fl.in.ctl`` and ``fl.tasks`` *from the beginning* through a groupless subscription (nothing is
committed) every time it starts, so a restarted dashboard rebuilds exactly the same aggregates.
Where records come from is behind
:class:`EnvelopeSource`; :class:`KafkaSource` is the real one, :class:`MemorySource` the in-memory
one for unit tests. Both replay everything from the beginning on each :meth:`EnvelopeSource.open`.

Each record is applied inside a guard: one whose body does not fit its :mod:`fedcore.messages`
model, or that the aggregator cannot fold in, is counted and handed back to the source's
:meth:`EnvelopeSource.set_aside` (``fl.dead`` on Kafka, with its reason), and the consumer goes
on.
Since every start replays the topics, such a record is set aside again at each start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Final, Protocol

from aiokafka.errors import KafkaError
from pydantic import ValidationError

from dashboard.aggregator import JOB_STATUS, LOG, METRIC, TASK_RUN, TASK_STATUS, Aggregator
from fedcore import topics
from fedcore.bus import Bus, ensure_topics
from fedcore.deadletter import DeadLetters, bounded
from fedcore.envelope import Envelope
from fedcore.messages import describe, parse_body

log = logging.getLogger(__name__)

# fl.in.ctl carries the other parties' task states, so each step shows every party's state;
# fl.tasks this party's component and arguments of each step (its parameters and dependencies).
TOPICS: Final = (topics.STATUS, topics.RESULTS, topics.LOGS, topics.IN_CTL, topics.TASKS)
# what the aggregator folds in: each body is held to its fedcore.messages model first
VALIDATED: Final = frozenset({JOB_STATUS, TASK_STATUS, TASK_RUN, METRIC, LOG})


class EnvelopeSource(Protocol):
    """Where envelopes come from: each ``open()`` replays all of them, then follows new ones."""

    def open(self) -> AbstractAsyncContextManager[AsyncIterable[Envelope]]: ...

    async def set_aside(self, env: Envelope, reason: str) -> None:
        """Keep an envelope the dashboard could not apply, with the reason (while open)."""
        ...


class KafkaSource:
    """This party's Kafka topics, read from the beginning without a consumer group."""

    def __init__(self, bootstrap: str, *, client_id: str, topic_names: Sequence[str] = TOPICS):
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._topics = list(topic_names)
        self._dead: DeadLetters | None = None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsyncIterable[Envelope]]:
        # The topics must exist before a groupless subscription assigns their partitions.
        await ensure_topics(self._bootstrap, self._topics)
        async with Bus(self._bootstrap, self._client_id) as bus:
            self._dead = DeadLetters(bus, "dashboard")
            try:
                async with bus.subscribe(self._topics, group_id=None) as subscription:
                    yield subscription
            finally:
                self._dead = None

    async def set_aside(self, env: Envelope, reason: str) -> None:
        if self._dead is None:
            raise RuntimeError("KafkaSource.set_aside outside open()")
        await self._dead.put_envelope(env, reason, source="dashboard replay")


class MemorySource:
    """An in-memory log of envelopes with Kafka's replay semantics (for tests)."""

    def __init__(self, envelopes: Sequence[Envelope] = ()) -> None:
        self._log: list[Envelope] = list(envelopes)
        self._appended = asyncio.Event()
        self.set_aside_envelopes: list[tuple[Envelope, str]] = []

    async def set_aside(self, env: Envelope, reason: str) -> None:
        self.set_aside_envelopes.append((env, reason))

    def publish(self, env: Envelope) -> None:
        self._log.append(env)
        self._appended.set()

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsyncIterable[Envelope]]:
        yield self._follow()

    async def _follow(self) -> AsyncIterator[Envelope]:
        position = 0
        while True:
            while position < len(self._log):
                position += 1
                yield self._log[position - 1]
            self._appended.clear()
            await self._appended.wait()


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
    records: int = 0
    set_aside: int = 0  # records the aggregator could not apply, since the last replay
    last_record_at: float | None = None
    error: str | None = None


class Consumer:
    """Runs the source into the aggregator until stopped; reconnects on Kafka errors.

    Each (re)connection replays from the beginning, so the aggregator is cleared first. A record
    the aggregator cannot apply is set aside (:meth:`EnvelopeSource.set_aside`) and counted; the
    next one is read.
    """

    def __init__(
        self,
        source: EnvelopeSource,
        aggregator: Aggregator,
        changes: Changes,
        *,
        retry_s: float = 2.0,
    ) -> None:
        self._source = source
        self._aggregator = aggregator
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
            except KafkaError as exc:
                self.status.connected = False
                self.status.error = f"kafka: {exc!r}"
                log.warning(
                    "dashboard consumer lost Kafka (%r); retrying in %.1f s", exc, self._retry_s
                )
                await asyncio.sleep(self._retry_s)

    async def _set_aside(self, env: Envelope, reason: str) -> None:
        self.status.set_aside += 1
        await self._source.set_aside(env, bounded(reason))

    async def _consume(self) -> None:
        async with self._source.open() as envelopes:
            self._aggregator.clear()
            self._changes.notify()
            self.status.connected = True
            self.status.error = None
            self.status.records = 0
            self.status.set_aside = 0
            async for env in envelopes:
                self.status.records += 1
                self.status.last_record_at = time.time()
                try:
                    if env.type in VALIDATED:
                        parse_body(env)
                    changed = self._aggregator.apply(env)
                except ValidationError as exc:
                    await self._set_aside(env, f"dashboard refuses {env.type}: {describe(exc)}")
                    continue
                except Exception as exc:  # the guard: one record must never stop the dashboard
                    reason = f"dashboard cannot apply {env.type}: {type(exc).__name__}: {exc}"
                    await self._set_aside(env, reason)
                    continue
                if changed:
                    self._changes.notify()
