"""The receiving half: verify a peer's batch, drop records already produced, produce the rest.

Checks, in order (the first failure rejects the whole batch, so nothing of it is produced):
the party is a configured peer with a public key (401, before the body is read), the signature
verifies over the exact body (401), the body is a batch within its bounds (400,
:meth:`Batch.decode`), the batch names the authenticated party as ``src`` and this party as
``dst`` and is younger than the de-duplication window (403), and every record targets an inbound
topic and passes :func:`~federation_bridge.wire.record_problem`: headers ``src`` = the signer,
``dst`` = this party, a well-formed ``id`` (and ``chunk``), and an unchunked record's envelope
naming the same ``id``, ``src`` and ``dst`` (4xx). Verifying and decoding a large batch run in a
worker thread, so it does not hold up the event loop (the sender's consumer heartbeats, other
peers); a small one is checked in place (:data:`INLINE_ADMIT_BYTES`).
Each refused request is logged in one line of at most ~1 KB.

A sender keeps several batches in flight; they are taken in their stream's order
(:mod:`federation_bridge.ordering`). Under a lock per sending party, a batch's new records are
claimed (:meth:`DedupStore.claim`) and handed to the producer in order; then the next batch may
go, its records queued behind these on each partition, while this one awaits the broker. A
record's key is noted as pending before it is queued, remembered as seen only after the broker
acknowledged it, and the answer (200) is sent only after all were produced and remembered. A
record still being produced is not claimed again by a re-sent batch: that waits for the first
to settle. After
a crash between the two, :mod:`federation_bridge.recovery` settles the pending keys from what the
inbound topics hold before the bridge serves again, so the peer's retry produces each record once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fedcore import topics
from fedcore.bus import PublishFailed, RawRecord
from fedcore.deadletter import MAX_LOG_CHARS, bounded
from federation_bridge import signing
from federation_bridge.dedup import DedupStore, RecordKey
from federation_bridge.metrics import BridgeMetrics
from federation_bridge.ordering import OutOfTurn, StreamOrder
from federation_bridge.wire import MAX_STR_CHARS, Batch, WireError, WireRecord, record_problem

log = logging.getLogger(__name__)

INBOUND_TOPICS = frozenset(topics.OUTBOUND_TO_INBOUND.values())
# a body up to this size is checked on the event loop: a trip to a worker thread and back would
# cost more than its check (tens of microseconds), and on a busy machine each trip waits for the
# scheduler; a larger body is hashed and decoded in a worker thread
INLINE_ADMIT_BYTES = 64 * 1024


class Publisher(Protocol):
    async def queue_raw_many(self, records: Sequence[RawRecord]) -> asyncio.Future[None]: ...


class Rejected(Exception):
    """A batch refused as a whole; ``status`` is the HTTP status, ``reason`` says why (bounded),
    ``retry_after_s`` when the sender should simply try again later."""

    def __init__(
        self, status: int, code: str, reason: str, *, retry_after_s: int | None = None
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = bounded(reason)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class Accepted:
    batch_id: str
    produced: int
    duplicates: int


@dataclass(frozen=True)
class _Queued:
    """A batch whose new records are with the producer."""

    batch_id: str
    produced: list[RecordKey]
    duplicates: int
    delivery: asyncio.Future[None]
    settled: asyncio.Future[None]


@dataclass
class ReceiverStats:
    batches: int = 0
    produced: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class Receiver:
    def __init__(
        self,
        *,
        party_id: str,
        public_keys: dict[str, Ed25519PublicKey],
        publisher: Publisher,
        dedup: DedupStore,
        max_age_s: float,
        order_wait_s: float,
        max_records: int,
        metrics: BridgeMetrics | None = None,
    ) -> None:
        self.party_id = party_id
        self._max_records = max_records
        self._keys = public_keys
        self._publisher = publisher
        self._dedup = dedup
        self._max_age_s = max_age_s
        self._order = StreamOrder(wait_s=order_wait_s)
        # one batch per sending party at a time, so a retry racing its own original (or a restarted
        # sender's new stream racing the old one's last batch) is produced once
        self._locks: dict[str, asyncio.Lock] = {}
        # keys queued to the producer and not yet settled -> when their batch settles
        self._producing: dict[RecordKey, asyncio.Future[None]] = {}
        self.stats = ReceiverStats()
        self.metrics = metrics or BridgeMetrics()

    async def receive(self, party: str | None, signature: str | None, body: bytes) -> Accepted:
        """Produce a batch's new records; :class:`Rejected` (for the caller to :meth:`reject`)."""
        if len(body) <= INLINE_ADMIT_BYTES:
            batch = self._admit(party, signature, body)
        else:
            batch = await asyncio.to_thread(self._admit, party, signature, body)
        try:
            await self._order.turn(batch.src, batch.stream, batch.seq, batch.base)
        except OutOfTurn as exc:
            raise Rejected(503, "out_of_order", str(exc), retry_after_s=1) from exc
        async with self._locks.setdefault(batch.src, asyncio.Lock()):
            queued = await self._queue(batch)
        self._order.applied(batch.src, batch.stream, batch.seq)
        result = await self._settle(queued)
        self.stats.batches += 1
        self.stats.produced += result.produced
        self.stats.duplicates += result.duplicates
        self.metrics.records_in.labels(batch.src).inc(result.produced)
        self.metrics.duplicates.labels(batch.src).inc(result.duplicates)
        return result

    def reject(self, party: str | None, exc: Rejected) -> None:
        """Count and log a refused request (one line of at most ~1 KB)."""
        self.stats.rejected[exc.code] += 1
        self.metrics.rejects.labels(exc.code).inc()
        who = bounded(repr(party), 80)
        log.warning(
            bounded(f"rejected a request from {who}: {exc.code}: {exc.reason}", MAX_LOG_CHARS)
        )

    def claimed_peer(self, party: str | None, signature: str | None) -> str:
        """The known peer a request claims to come from, before its body is read (the signature
        is verified with the body); :class:`Rejected` (401) otherwise, uncounted."""
        if not party or not signature:
            raise Rejected(401, "unsigned", "X-Tessera-Party and X-Tessera-Signature are required")
        if party not in self._keys:
            raise Rejected(401, "unknown_party", f"party {party!r} is not a known peer")
        if len(signature) > MAX_STR_CHARS:
            raise Rejected(401, "bad_signature", "the signature header is too long")
        return party

    def verify_signer(self, party: str | None, signature: str | None, body: bytes) -> str:
        """The known peer that signed ``body``; :class:`Rejected` (401) otherwise, uncounted."""
        peer = self.claimed_peer(party, signature)
        if not signing.verify(self._keys[peer], body, signature or ""):
            raise Rejected(401, "bad_signature", f"the signature does not verify for {peer!r}")
        return peer

    def _admit(self, party: str | None, signature: str | None, body: bytes) -> Batch:
        """The verified, bounded, authorised batch (in a worker thread: pure CPU, no state)."""
        party = self.verify_signer(party, signature, body)
        try:
            batch = Batch.decode(body, max_records=self._max_records)
        except WireError as exc:
            raise Rejected(400, "malformed", str(exc)) from exc
        if batch.src != party:
            raise Rejected(403, "src_mismatch", f"batch src {batch.src!r} is not signer {party!r}")
        if batch.dst != self.party_id:
            raise Rejected(403, "dst_mismatch", f"batch is for {batch.dst!r}, not {self.party_id}")
        age_s = time.time() - batch.sent_ms / 1000
        if age_s > self._max_age_s:
            raise Rejected(403, "stale", f"batch is {age_s:.0f} s old, older than the dedup window")
        for i, record in enumerate(batch.records):
            if record.topic not in INBOUND_TOPICS:
                raise Rejected(403, "topic", f"record {i}: {record.topic!r} is not inbound")
            problem = record_problem(record, src=party, dst=self.party_id)
            if problem is not None:
                raise Rejected(problem.status, problem.code, f"record {i}: {problem.reason}")
        return batch

    async def _queue(self, batch: Batch) -> _Queued:
        keys = [_record_key(batch.src, r) for r in batch.records]
        racing = {self._producing[key] for key in keys if key in self._producing}
        if racing:  # a re-send overtook its original: let that settle, then claim what it left
            await asyncio.wait(racing)
        already = await self._dedup.claim(
            [(key, r.topic) for key, r in zip(keys, batch.records, strict=True)]
        )
        fresh: list[tuple[RecordKey, WireRecord]] = []
        duplicates = 0
        for key, record in zip(keys, batch.records, strict=True):
            if key in already:
                duplicates += 1
                continue
            already.add(key)  # a batch that repeats a record produces it once
            fresh.append((key, record))
        produced = [key for key, _ in fresh]
        try:
            delivery = await self._publisher.queue_raw_many(
                [RawRecord(r.topic, r.key, r.value, r.headers) for _, r in fresh]
            )
        except PublishFailed as exc:
            await self._settle_failed(produced, exc)
            raise
        settled = asyncio.get_running_loop().create_future()
        self._producing.update(dict.fromkeys(produced, settled))
        return _Queued(batch.batch_id, produced, duplicates, delivery, settled)

    async def _settle(self, queued: _Queued) -> Accepted:
        try:
            await queued.delivery
        except PublishFailed as exc:
            await self._settle_failed(queued.produced, exc)
            raise
        else:
            await self._dedup.mark(queued.produced)
        finally:
            for key in queued.produced:
                del self._producing[key]
            queued.settled.set_result(None)
        return Accepted(queued.batch_id, len(queued.produced), queued.duplicates)

    async def _settle_failed(self, produced: list[RecordKey], exc: PublishFailed) -> None:
        # remember what reached Kafka even though others failed: the retry skips it
        delivered = set(exc.delivered)
        await self._dedup.mark([produced[i] for i in delivered])
        await self._dedup.forget_pending([k for i, k in enumerate(produced) if i not in delivered])


def _record_key(src: str, record: WireRecord) -> RecordKey:
    return (src, record.header("id") or "", record.header("chunk") or "")
