"""This party's Kafka behind a small interface: publish envelopes, consume them, commit.

Records are keyed by job id so one job's records stay in order. An envelope larger than
``max_record_bytes`` is split into chunk records (headers ``id`` and ``chunk = i/n``) that the
consumer reassembles; a consumer never commits past the first chunk of a message it has not yet
handed out, so a restart re-reads an incomplete message instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from fedcore import topics
from fedcore.codec import CodecError
from fedcore.envelope import Envelope

_log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 900_000
PARTITIONS = 3


class PublishFailed(KafkaError):  # type: ignore[misc]
    """Some records of :meth:`Bus.queue_raw_many` did not reach the broker.

    ``delivered`` holds the indices of those that did; ``error`` is the first failure.
    """

    def __init__(self, delivered: list[int], error: BaseException) -> None:
        super().__init__(f"{error!r} ({len(delivered)} records were delivered)")
        self.delivered = delivered
        self.error = error


@dataclass(frozen=True)
class RawRecord:
    """A Kafka record as bytes, for :meth:`Bus.queue_raw_many`."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]] = ()


def header(record: ConsumerRecord, name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return value.decode()
    return None


class Bus:
    """A producer on this party's Kafka, plus factories for consumers of the same cluster."""

    def __init__(
        self, bootstrap: str, client_id: str, *, max_record_bytes: int = MAX_RECORD_BYTES
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.max_record_bytes = max_record_bytes
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        await ensure_topics(self.bootstrap)
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            client_id=self.client_id,
            acks="all",
            enable_idempotence=True,
            max_request_size=self.max_record_bytes + 64_000,
            # no linger: aiokafka has one request in flight per broker, so records sent meanwhile
            # are batched behind it anyway; a linger only delays a lone record
            linger_ms=0,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("Bus.start() has not been awaited")
        return self._producer

    async def publish(self, topic: str, env: Envelope) -> None:
        """Write one envelope to a topic and wait until the broker has it."""
        data = env.to_bytes()
        key = env.job_id.encode()
        hdrs = env.headers()
        step = self.max_record_bytes
        if len(data) <= step:
            await self.producer.send_and_wait(topic, data, key=key, headers=hdrs)
            return
        count = (len(data) + step - 1) // step
        futures = [
            await self.producer.send(
                topic,
                data[i * step : (i + 1) * step],
                key=key,
                headers=[*hdrs, ("chunk", f"{i}/{count}".encode())],
            )
            for i in range(count)
        ]
        await asyncio.gather(*futures)

    async def publish_raw(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        """Write a record exactly as received (the bridge mirrors records without decoding them)."""
        await self.producer.send_and_wait(topic, value, key=key, headers=headers)

    async def queue_raw_many(self, records: Sequence[RawRecord]) -> asyncio.Future[None]:
        """Hand records to the producer in order, each before any is awaited, so the broker round
        trips overlap; return once all are queued, with the future of their delivery.

        Order per partition is the order of queueing (the idempotent producer keeps it across its
        own retries), also across calls. :class:`PublishFailed` says which records the broker did
        take: raised here if the producer refuses one (after those before it settled), else by
        the future.
        """
        futures: list[asyncio.Future[object]] = []
        try:
            for r in records:
                futures.append(
                    await self.producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
                )
        except KafkaError as exc:
            results = await asyncio.gather(*futures, return_exceptions=True)
            raise PublishFailed(_delivered(results), exc) from exc
        return asyncio.ensure_future(_settle(futures))

    def subscribe(
        self,
        topic_names: Iterable[str],
        *,
        group_id: str | None,
        start_time_ms: int | None = None,
    ) -> Subscription:
        """Envelopes from ``topic_names``: as a consumer group, or groupless from a time."""
        return Subscription(self.bootstrap, list(topic_names), group_id, start_time_ms)


async def _settle(futures: list[asyncio.Future[object]]) -> None:
    results = await asyncio.gather(*futures, return_exceptions=True)
    errors = [res for res in results if isinstance(res, BaseException)]
    if errors:
        raise PublishFailed(_delivered(results), errors[0]) from errors[0]


def _delivered(results: Sequence[object]) -> list[int]:
    return [i for i, res in enumerate(results) if not isinstance(res, BaseException)]


async def ensure_topics(bootstrap: str, names: Iterable[str] = topics.ALL) -> None:
    """Create Tessera's topics if they are missing (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=PARTITIONS, replication_factor=1)
            for name in names
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another service created them between our list and create
    finally:
        await admin.close()


async def partitions(bootstrap: str, names: Iterable[str]) -> dict[str, list[int]]:
    """The partition ids of each named topic, as the cluster has them now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(names))
    finally:
        await admin.close()
    return {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described}


@dataclass
class _Partial:
    first_offset: int
    count: int
    parts: dict[int, bytes] = field(default_factory=dict)


class Subscription:
    """Consume envelopes; call :meth:`commit` once each handed-out envelope has been handled."""

    def __init__(
        self,
        bootstrap: str,
        topic_names: list[str],
        group_id: str | None,
        start_time_ms: int | None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topic_names
        self._group_id = group_id
        self._start_time_ms = start_time_ms
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        self._partials: dict[tuple[TopicPartition, str], _Partial] = {}
        self.skipped = 0  # undecodable records passed over
        self._next: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        if self._group_id is not None:
            self._consumer.subscribe(self._topics)
        else:
            await self._assign_from_time()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def _assign_from_time(self) -> None:
        tps = [
            TopicPartition(t, p)
            for t, parts in (await partitions(self._bootstrap, self._topics)).items()
            for p in parts
        ]
        self._consumer.assign(tps)
        if self._start_time_ms is None:
            await self._consumer.seek_to_beginning(*tps)
            return
        # The end is read before the time lookup: a record produced between the two is then
        # still ahead of the position instead of skipped by a later seek_to_end.
        ends = await self._consumer.end_offsets(tps)
        found = await self._consumer.offsets_for_times(dict.fromkeys(tps, self._start_time_ms))
        for tp in tps:
            hit = found.get(tp)
            self._consumer.seek(tp, ends[tp] if hit is None else hit.offset)

    def __aiter__(self) -> AsyncIterator[Envelope]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Envelope]:
        async for record in self._consumer:
            env = self._assemble(record)
            if env is not None:
                yield env

    def _assemble(self, record: ConsumerRecord) -> Envelope | None:
        tp = TopicPartition(record.topic, record.partition)
        self._next[tp] = record.offset + 1
        try:
            return self._decode(tp, record)
        except (CodecError, ValidationError, ValueError) as exc:
            # Re-reading cannot make a malformed record valid: skip it (its offset is committed
            # with the next one) rather than stall every later record of the partition.
            self.skipped += 1
            _log.error("skipping undecodable record %s[%d]@%d: %s", *tp, record.offset, exc)
            return None

    def _decode(self, tp: TopicPartition, record: ConsumerRecord) -> Envelope | None:
        chunk = header(record, "chunk")
        if chunk is None:
            return Envelope.from_bytes(record.value)
        index, count = (int(x) for x in chunk.split("/"))
        key = (tp, header(record, "id") or "")
        partial = self._partials.setdefault(key, _Partial(record.offset, count))
        if not (0 <= index < count == partial.count):
            del self._partials[key]
            raise ValueError(f"chunk header {chunk!r} does not fit its message")
        partial.parts[index] = record.value
        if len(partial.parts) < partial.count:
            return None
        del self._partials[key]
        return Envelope.from_bytes(b"".join(partial.parts[i] for i in range(partial.count)))

    async def commit(self) -> None:
        """Commit everything handed out so far (never past an incomplete chunked message)."""
        if self._group_id is None:
            return
        offsets = dict(self._next)
        for (tp, _), partial in self._partials.items():
            offsets[tp] = min(offsets.get(tp, partial.first_offset), partial.first_offset)
        if offsets:
            await self._consumer.commit(offsets)
