"""The sending half: mirror this party's ``fl.out.*`` records to the destination peers' bridges.

One consumer (group ``bridge-<party_id>``, manual commits) reads both outbound topics as raw
records and routes each by its ``dst`` header into that peer's bounded buffer; one task per peer
takes batches from its buffer, numbers them and keeps up to ``batches_in_flight`` of them in
delivery at once (:mod:`federation_bridge.delivery`), so reading, signing, the transfer and the
peer's produce of successive batches overlap; the peer applies them in order. An offset is
committed only once every record before it in its partition has been delivered (2xx) or
dead-lettered, so a crash re-sends rather than loses (the receiver de-duplicates).

A record the bridge can never deliver — no or unknown ``dst``, ``dst`` = this party, or one the
peer would refuse (:func:`~federation_bridge.wire.record_problem`: a ``src`` other than this party,
no well-formed ``id``, an envelope whose body disagrees with its headers, an oversized record) —
is a defect of its producer. It is set aside on ``fl.dead`` like every consumer's poison
(:mod:`fedcore.deadletter`: untouched, plus ``dead_*`` headers, counted, one bounded log line),
then committed past. Holding it instead would stall every job that shares its partition
until a restart with a new configuration; the dead-letter topic keeps it for an operator to
inspect and replay without blocking the others.

Backpressure: when a peer's buffer (records waiting and in flight) is full the consumer pauses its
partitions (still polling, so it keeps its group membership) until that peer drains; records wait
in Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from fedcore import topics
from fedcore.bus import Bus
from fedcore.deadletter import DeadLetters
from fedcore.settings import PartySettings
from federation_bridge.buffer import PeerBuffer
from federation_bridge.delivery import PeerLink
from federation_bridge.metrics import BridgeMetrics
from federation_bridge.offsets import OffsetTracker, Ticket
from federation_bridge.options import BridgeOptions
from federation_bridge.wire import WireRecord, find_header, record_problem, summary

log = logging.getLogger(__name__)

_POLL_MS = 500
_KAFKA_RETRY_S = 1.0
_POSITION_WAIT_S = 0.5
# how long the broker may hold an empty fetch; short, so a record is picked up promptly
_FETCH_WAIT_MS = 100


@dataclass(frozen=True)
class Outgoing:
    record: WireRecord
    ticket: Ticket
    timestamp_ms: int  # the record's Kafka timestamp on fl.out.*, for the delivery latency

    def __len__(self) -> int:
        return self.record.size


@dataclass(frozen=True)
class _Dead:
    reason: str


class Sender:
    """Consume ``fl.out.*``, deliver to peers, commit behind deliveries. ``start`` / ``stop``."""

    def __init__(
        self,
        *,
        settings: PartySettings,
        options: BridgeOptions,
        bus: Bus,
        clients: Mapping[str, httpx.AsyncClient],
        private_key: Ed25519PrivateKey,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._options = options
        self._bus = bus
        self.metrics = metrics or BridgeMetrics()
        self._dead = DeadLetters(bus, "federation_bridge", on_dead=self.metrics.dead_lettered.inc)
        self.links = {
            peer: PeerLink(
                party_id=settings.party_id,
                peer_id=peer,
                url=url,
                client=clients[peer],
                private_key=private_key,
                options=options,
                metrics=self.metrics,
            )
            for peer, url in settings.peers.items()
        }
        self._buffers: dict[str, PeerBuffer[Outgoing]] = {}
        self._tracker = OffsetTracker()
        self._held: deque[ConsumerRecord] = deque()
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._consume_task: asyncio.Task[None] | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._committer: asyncio.Task[None] | None = None
        self._delivered = asyncio.Event()
        self._closing = False
        self.failure: str | None = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("Sender.start() has not been awaited")
        return self._consumer

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap,
            group_id=f"bridge-{self._settings.party_id}",
            client_id=f"bridge-{self._settings.party_id}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_wait_ms=_FETCH_WAIT_MS,
        )
        await self._consumer.start()
        self._consumer.subscribe(list(topics.OUTBOUND_TO_INBOUND), listener=_Rebalance(self))
        opts = self._options
        for peer in self.links:
            self._buffers[peer] = PeerBuffer(
                max_records=opts.buffer_max_records, max_bytes=opts.buffer_max_bytes
            )
            self._workers[peer] = self._spawn(self._run_peer(peer), f"bridge-send-{peer}")
        self._consume_task = self._spawn(self._consume(), "bridge-consume")
        self._committer = self._spawn(self._run_committer(), "bridge-commit")

    async def stop(self) -> None:
        """Stop reading, let deliveries in flight finish (bounded), commit, close. Idempotent."""
        if self._consumer is None:
            return
        self._closing = True
        if self._consume_task is not None:
            await _cancel(self._consume_task)
        for task in self._workers.values():
            await _cancel(task)
        if self._deliveries:
            await asyncio.wait(self._deliveries, timeout=self._options.shutdown_grace_s)
        for task in list(self._deliveries):
            await _cancel(task)
        if self._committer is not None:
            await _cancel(self._committer)
        await self._commit()
        consumer, self._consumer = self._consumer, None
        await consumer.stop()

    def stats(self) -> dict[str, object]:
        return {
            "running": self.failure is None and not self._closing,
            "failure": self.failure,
            "dead_lettered": self._dead.count,
            "in_flight": self._tracker.in_flight(),
            "peers": {
                peer: {
                    "buffered": len(self._buffers[peer]) if peer in self._buffers else 0,
                    "sending": self._buffers[peer].taken if peer in self._buffers else 0,
                    "batches": link.stats.batches,
                    "records": link.stats.records,
                    "failed_attempts": link.stats.failed_attempts,
                    "last_error": link.stats.last_error,
                }
                for peer, link in self.links.items()
            },
        }

    async def refresh_metrics(self) -> None:
        """Set the gauges that describe the present: read-ahead per peer, lag per topic."""
        m = self.metrics
        for peer, buffer in self._buffers.items():
            m.pending.labels(peer).set(len(buffer))
        m.in_flight.set(self._tracker.in_flight())
        consumer = self._consumer
        if consumer is None:
            return
        lag: dict[str, int] = dict.fromkeys(topics.OUTBOUND_TO_INBOUND, 0)
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from it yet
            start = self._tracker.position(tp)
            if start is None:
                try:
                    start = await asyncio.wait_for(consumer.position(tp), _POSITION_WAIT_S)
                except (TimeoutError, KafkaError):
                    continue
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, end - start)
        for topic, value in lag.items():
            m.lag.labels(topic).set(value)

    # -- consuming and routing ------------------------------------------------------------------

    async def _consume(self) -> None:
        consumer = self.consumer
        while True:
            blocked = await self._place_held()
            if blocked is not None:
                await self._wait_for(*blocked)
                continue
            fetched = await consumer.getmany(
                timeout_ms=_POLL_MS, max_records=self._options.batch_max_records
            )
            for records in fetched.values():
                self._held.extend(records)

    async def _place_held(self) -> tuple[str, int] | None:
        """Route held records in order; the full peer buffer that stopped us (and the size of
        the record that did not fit), or None."""
        while self._held:
            record = self._held[0]
            route = self._route(record)
            tp = TopicPartition(record.topic, record.partition)
            if isinstance(route, _Dead):
                await self._dead_letter(record, route.reason)
                if not (self._held and self._held[0] is record):
                    continue  # a rebalance during the await took the partition away
                self._tracker.done(self._tracker.track(tp, record.offset))
            else:
                peer, wire = route
                # tracking a record again after a failed put is harmless: same offset, pending
                ticket = self._tracker.track(tp, record.offset)
                item = Outgoing(wire, ticket, record.timestamp)
                if not self._buffers[peer].try_put(item):
                    return peer, len(item)
            self._held.popleft()
        return None

    async def _wait_for(self, peer: str, size: int) -> None:
        """Pause reading until ``peer``'s buffer has room; keep polling to stay in the group."""
        consumer = self.consumer
        consumer.pause(*consumer.assignment())
        log.info("buffer for party %s is full; pausing reads from Kafka", peer)
        space = asyncio.ensure_future(self._buffers[peer].wait_until_fits(size))
        try:
            while not space.done():
                await asyncio.wait({space}, timeout=_POLL_MS / 1000)
                # a rebalance may hand us new, unpaused partitions: keep what they yield in order
                for records in (await consumer.getmany(timeout_ms=0)).values():
                    self._held.extend(records)
                consumer.pause(*consumer.assignment())
        finally:
            space.cancel()
            consumer.resume(*consumer.paused())

    def _route(self, record: ConsumerRecord) -> tuple[str, WireRecord] | _Dead:
        """The peer a record goes to and its wire form, or why it cannot go."""
        dst = find_header(record.headers or (), "dst")
        own = self._settings.party_id
        if dst is None:
            return _Dead("the record has no dst header")
        if dst == own:
            return _Dead(f"dst {dst} is this party; outbound records are for other parties")
        if dst not in self.links:
            return _Dead(f"dst {dst!r} is not a configured peer (OTHER_PARTIES)")
        try:
            wire = _to_wire(record)
        except ValidationError as exc:
            return _Dead(f"not a record the wire format carries: {summary(exc)}")
        problem = record_problem(wire, src=own, dst=dst)
        if problem is not None:
            return _Dead(f"{problem.reason}; the peer would refuse it")
        return dst, wire

    async def _dead_letter(self, record: ConsumerRecord, reason: str) -> None:
        where = f"{record.topic}[{record.partition}]@{record.offset}"
        headers = list(record.headers or ())
        await self._dead.put_raw(record.key, record.value, headers, reason, source=where)

    # -- delivering and committing --------------------------------------------------------------

    async def _run_peer(self, peer: str) -> None:
        buffer, link = self._buffers[peer], self.links[peer]
        opts = self._options
        window = asyncio.Semaphore(opts.batches_in_flight)
        while True:
            await window.acquire()
            items = await buffer.take(
                max_records=opts.batch_max_records, max_bytes=opts.batch_max_bytes
            )
            task = self._spawn(
                self._deliver(peer, link.number(), items), f"bridge-send-{peer}-batch"
            )
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)
            task.add_done_callback(lambda _: window.release())

    async def _deliver(self, peer: str, seq: int, items: list[Outgoing]) -> None:
        await self.links[peer].deliver(seq, [item.record for item in items])
        self._buffers[peer].release(items)
        now_ms = time.time() * 1000
        latency = self.metrics.delivery_latency.labels(peer)
        for item in items:
            self._tracker.done(item.ticket)
            latency.observe(max(0.0, now_ms - item.timestamp_ms) / 1000)
        # committed by the committer task: the next batch need not wait for the broker
        self._delivered.set()

    async def _run_committer(self) -> None:
        """Commit what is delivered, one commit at a time and at most one per interval."""
        while True:
            await self._delivered.wait()
            self._delivered.clear()
            await self._commit()
            await asyncio.sleep(self._options.commit_interval_s)

    async def _commit(self, tps: set[TopicPartition] | None = None) -> None:
        async with self._commit_lock:
            await self._commit_unlocked(tps)

    async def _commit_unlocked(self, tps: set[TopicPartition] | None = None) -> None:
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        offsets = {tp: off for tp, off in self._tracker.to_commit(tps).items() if tp in assigned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except KafkaError as exc:
            # not a loss: the records are delivered; at worst they are re-sent and de-duplicated
            log.warning("offset commit failed, the next commit will cover it: %r", exc)
            return
        self._tracker.committed(offsets)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._on_task_done)
        return task

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self.failure = f"{task.get_name()} stopped: {exc!r}"
        log.critical("the sender's task %s died; nothing more is sent", task.get_name(),
                     exc_info=exc)  # fmt: skip

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        # Commit what is delivered before another member takes over, without the commit lock:
        # a commit holding it may itself be waiting for this rebalance to finish.
        await self._commit_unlocked(revoked)
        self._tracker.forget(revoked)
        kept = [r for r in self._held if TopicPartition(r.topic, r.partition) not in revoked]
        self._held.clear()
        self._held.extend(kept)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sender: Sender) -> None:
        self._sender = sender

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._sender._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("bridge consumer assigned %s", sorted(assigned))


def _to_wire(record: ConsumerRecord) -> WireRecord:
    return WireRecord(
        topic=topics.OUTBOUND_TO_INBOUND[record.topic],
        key=record.key,
        value=record.value,
        headers=list(record.headers or ()),
    )


async def _cancel(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it; its own failure, if any, was reported by its callback."""
    task.cancel()
    await asyncio.wait({task})
