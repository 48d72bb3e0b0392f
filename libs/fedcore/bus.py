"""This party's Kafka behind a small interface: publish envelopes, consume them, commit.

Records are keyed by job id so one job's records stay in order. An envelope larger than
``max_record_bytes`` is split into chunk records (headers ``id`` and ``chunk = i/n``) that the
consumer reassembles; a consumer never commits past the first chunk of a message it has not yet
handed out, so a restart re-reads an incomplete message instead of losing it.

Chunk headers may come from another party (through the bridge), so reassembly is bounded
(:class:`ChunkLimits`): a message of more chunks than ``max_message_bytes`` needs is refused at
its first chunk; an incomplete message is dropped once a record of its partition is more than
``max_partial_age_s`` younger than its first chunk, or when the subscription holds more than
``max_partial_bytes`` in incomplete messages (the oldest goes first). A record that does not
decode, a dropped partial message and an envelope whose body names another ``id``, ``src`` or
``dst`` than its headers are set aside: to ``fl.dead`` when the subscription was given a
:class:`~fedcore.deadletter.DeadLetters`, else counted in :attr:`Subscription.skipped` and logged
in one bounded line; either way the commit moves past them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from fedcore import topics
from fedcore.codec import CodecError
from fedcore.deadletter import MAX_LOG_CHARS, DeadLetters, bounded
from fedcore.envelope import Envelope

_log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 900_000
PARTITIONS = 3
_CHUNK = re.compile(r"(\d{1,9})/(\d{1,9})")


@dataclass(frozen=True)
class ChunkLimits:
    """Bounds on reassembling chunked messages, per subscription."""

    # the largest envelope reassembled; its chunk count bounds the ``n`` of ``chunk = i/n``
    max_message_bytes: int = 256 * 1024 * 1024
    # bytes held in incomplete messages; past it the oldest incomplete message is dropped
    max_partial_bytes: int = 512 * 1024 * 1024
    # incomplete messages held at once; past it the oldest is dropped
    max_partials: int = 256
    # record time (Kafka timestamps of the same partition) from a message's first chunk after
    # which it is dropped as incomplete; its chunks are written back to back, so one that has not
    # completed by then never will
    max_partial_age_s: float = 3600.0

    def max_chunks(self, max_record_bytes: int) -> int:
        return -(-self.max_message_bytes // max_record_bytes)


def parse_chunk(text: str, max_count: int | None = None) -> tuple[int, int]:
    """``(i, n)`` of a ``chunk = i/n`` header; ValueError unless ``0 <= i < n <= max_count``."""
    match = _CHUNK.fullmatch(text)
    if match is None:
        raise ValueError(f"chunk header {bounded(text, 40)!r} is not i/n")
    index, count = int(match[1]), int(match[2])
    if not 0 <= index < count:
        raise ValueError(f"chunk header {text!r}: not 0 <= i < n")
    if max_count is not None and count > max_count:
        raise ValueError(f"chunk header {text!r}: a message has at most {max_count} chunks")
    return index, count


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
        self,
        bootstrap: str,
        client_id: str,
        *,
        max_record_bytes: int = MAX_RECORD_BYTES,
        chunk_limits: ChunkLimits | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.client_id = client_id
        self.max_record_bytes = max_record_bytes
        self.chunk_limits = chunk_limits or ChunkLimits()
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
        dead_letters: DeadLetters | None = None,
    ) -> Subscription:
        """Envelopes from ``topic_names``: as a consumer group, or groupless from a time. What
        cannot be handed out goes to ``dead_letters`` if given (a groupless reader that replays
        would set the same record aside again each time, so it usually only counts)."""
        return Subscription(
            self.bootstrap,
            list(topic_names),
            group_id,
            start_time_ms,
            limits=self.chunk_limits,
            max_chunks=self.chunk_limits.max_chunks(self.max_record_bytes),
            dead_letters=dead_letters,
        )


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
    first_ms: int
    count: int
    key: bytes | None
    headers: list[tuple[str, bytes]]
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class _SetAside(ValueError):
    """A record that cannot be handed out (the message says why)."""


class Subscription:
    """Consume envelopes; call :meth:`commit` once each handed-out envelope has been handled."""

    def __init__(
        self,
        bootstrap: str,
        topic_names: list[str],
        group_id: str | None,
        start_time_ms: int | None,
        *,
        limits: ChunkLimits,
        max_chunks: int,
        dead_letters: DeadLetters | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._topics = topic_names
        self._group_id = group_id
        self._start_time_ms = start_time_ms
        self._limits = limits
        self._max_chunks = max_chunks
        self._dead_letters = dead_letters
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        # insertion-ordered: the first is the oldest incomplete message
        self._partials: dict[tuple[TopicPartition, str], _Partial] = {}
        self._partial_bytes = 0
        self.skipped = 0  # records set aside (undecodable, dropped partials, mismatched headers)
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
            env = await self._take(record)
            if env is not None:
                yield env

    async def batches(
        self, *, max_records: int = 500, wait_ms: int = 1000
    ) -> AsyncIterator[list[Envelope]]:
        """Envelopes in lists of what has arrived (from at most ``max_records`` records each), for
        a consumer that applies a list at a time; :meth:`commit` after a list commits exactly up
        to it. A wait of ``wait_ms`` that brings nothing yields nothing."""
        while True:
            fetched = await self._consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
            envelopes = []
            for records in fetched.values():
                for record in records:
                    if (env := await self._take(record)) is not None:
                        envelopes.append(env)
            if envelopes:
                yield envelopes

    async def _take(self, record: ConsumerRecord) -> Envelope | None:
        """The envelope a record completes, if any; what cannot be handed out is set aside."""
        tp = TopicPartition(record.topic, record.partition)
        self._next[tp] = record.offset + 1
        for stale, reason in self._expired(tp, record.timestamp):
            await self._set_aside_partial(stale, reason)
        try:
            env = self._decode(tp, record)
        except (_SetAside, CodecError, ValidationError, ValueError) as exc:
            # Re-reading cannot make a malformed record valid: set it aside (its offset is
            # committed with the next one) rather than stall every later record of the
            # partition.
            await self._set_aside(
                record.key, record.value, list(record.headers or ()), str(exc), record
            )
            return None
        for partial, reason in self._over_budget():
            await self._set_aside_partial(partial, reason)
        return env

    def _decode(self, tp: TopicPartition, record: ConsumerRecord) -> Envelope | None:
        chunk = header(record, "chunk")
        if chunk is None:
            return _checked(Envelope.from_bytes(record.value), record)
        index, count = parse_chunk(chunk, self._max_chunks)
        msg_id = header(record, "id")
        if not msg_id:
            raise _SetAside("a chunk record without an id header")
        key = (tp, msg_id)
        partial = self._partials.get(key)
        if partial is None:
            headers = list(record.headers or ())
            partial = _Partial(record.offset, record.timestamp, count, record.key, headers)
            self._partials[key] = partial
        elif count != partial.count:
            raise _SetAside(f"chunk header {chunk!r}: its message has {partial.count} chunks")
        if index not in partial.parts:
            partial.parts[index] = record.value
            partial.size += len(record.value)
            self._partial_bytes += len(record.value)
        if partial.size > self._limits.max_message_bytes:
            self._drop(key)
            raise _SetAside(f"message {msg_id!r} exceeds {self._limits.max_message_bytes} bytes")
        if len(partial.parts) < partial.count:
            return None
        self._drop(key)
        data = b"".join(partial.parts[i] for i in range(partial.count))
        return _checked(Envelope.from_bytes(data), record)

    def _drop(self, key: tuple[TopicPartition, str]) -> _Partial:
        partial = self._partials.pop(key)
        self._partial_bytes -= partial.size
        return partial

    def _expired(self, tp: TopicPartition, now_ms: int) -> list[tuple[_Partial, str]]:
        """Incomplete messages of ``tp`` older (in record time) than the age bound, dropped."""
        max_ms = self._limits.max_partial_age_s * 1000
        stale = [
            k for k, p in self._partials.items() if k[0] == tp and now_ms - p.first_ms > max_ms
        ]
        reason = f"incomplete after {self._limits.max_partial_age_s:.0f} s of its partition"
        return [(self._drop(key), reason) for key in stale]

    def _over_budget(self) -> list[tuple[_Partial, str]]:
        """The oldest incomplete messages, dropped until the rest fit the byte bound."""
        dropped = []
        limits = self._limits
        while self._partials and (
            self._partial_bytes > limits.max_partial_bytes
            or len(self._partials) > limits.max_partials
        ):
            reason = (
                f"more than {limits.max_partials} incomplete messages"
                f" or {limits.max_partial_bytes} bytes in them"
            )
            dropped.append((self._drop(next(iter(self._partials))), reason))
        return dropped

    async def _set_aside_partial(self, partial: _Partial, reason: str) -> None:
        parts = b"".join(partial.parts[i] for i in sorted(partial.parts))
        have = f"{len(partial.parts)} of {partial.count} chunks"
        await self._set_aside(partial.key, parts, partial.headers, f"{reason} ({have})", None)

    async def _set_aside(
        self,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        reason: str,
        record: ConsumerRecord | None,
    ) -> None:
        self.skipped += 1
        where = (
            f"{record.topic}[{record.partition}]@{record.offset}"
            if record is not None
            else "an incomplete chunked message"
        )
        if self._dead_letters is not None:
            await self._dead_letters.put_raw(key, value, headers, reason, source=where)
        else:
            _log.error(bounded(f"skipping {where}: {reason}", MAX_LOG_CHARS))

    async def commit(self) -> None:
        """Commit everything handed out so far (never past an incomplete chunked message)."""
        if self._group_id is None:
            return
        offsets = dict(self._next)
        for (tp, _), partial in self._partials.items():
            offsets[tp] = min(offsets.get(tp, partial.first_offset), partial.first_offset)
        if offsets:
            await self._consumer.commit(offsets)


def _checked(env: Envelope, record: ConsumerRecord) -> Envelope:
    """``env`` if its body names the ``id``, ``src`` and ``dst`` of its record's headers (which
    the bridge checked against the signer); a consumer may then trust the body."""
    for name, value in (("id", env.id), ("src", env.src), ("dst", env.dst)):
        if header(record, name) != value:
            raise _SetAside(f"the envelope's {name} is not its {name} header")
    return env
