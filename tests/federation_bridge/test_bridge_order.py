"""Pipelined batches without Kafka: the receiver takes a stream's batches in order, queues the next
while the last is still being produced, and never produces a record twice when a re-send races
its original. The producer is a fake whose deliveries the test settles by hand."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore import topics
from fedcore.bus import RawRecord
from fedcore.envelope import Envelope
from federation_bridge import signing
from federation_bridge.dedup import DedupStore
from federation_bridge.ordering import OutOfTurn, StreamOrder
from federation_bridge.receiver import Accepted, Receiver, Rejected
from federation_bridge.wire import Batch, WireRecord

SRC, DST = "10000", "20000"
KEY = Ed25519PrivateKey.generate()


class FakeProducer:
    """Notes record names in the order they are queued; each call's delivery waits for
    :meth:`ack`."""

    def __init__(self) -> None:
        self.queued: list[bytes] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self._more = asyncio.Event()

    async def queue_raw_many(self, records: Sequence[RawRecord]) -> asyncio.Future[None]:
        self.queued.extend(Envelope.from_bytes(r.value).body["name"].encode() for r in records)
        self._more.set()
        self.deliveries.append(asyncio.get_running_loop().create_future())
        return self.deliveries[-1]

    async def until_queued(self, count: int) -> None:
        while len(self.queued) < count:
            self._more.clear()
            await self._more.wait()

    def ack(self) -> None:
        for delivery in self.deliveries:
            if not delivery.done():
                delivery.set_result(None)


@pytest_asyncio.fixture
async def dedup(tmp_path: Path) -> AsyncIterator[DedupStore]:
    async with DedupStore(tmp_path / "dedup.sqlite", retention_s=3600) as store:
        yield store


def _receiver(producer: FakeProducer, dedup: DedupStore, order_wait_s: float = 5) -> Receiver:
    return Receiver(
        party_id=DST,
        public_keys={SRC: KEY.public_key()},
        publisher=producer,
        dedup=dedup,
        max_age_s=3600,
        order_wait_s=order_wait_s,
        max_records=100,
    )


def _record(name: str) -> WireRecord:
    # the same name is the same record (its id), as when a sender re-sends it
    record_id = uuid.uuid5(uuid.NAMESPACE_URL, name).hex
    env = Envelope(
        id=record_id, type="fed", job_id="ab" * 16, src=SRC, dst=DST, body={"name": name}
    )
    return WireRecord(topic=topics.IN_FED, key=b"job", value=env.to_bytes(), headers=env.headers())


def _body(seq: int, base: int, *names: str, stream: str = "s1") -> bytes:
    batch = Batch(
        src=SRC,
        dst=DST,
        batch_id=f"{stream}-{seq}",
        sent_ms=int(time.time() * 1000),
        records=[_record(n) for n in names],
        stream=stream,
        seq=seq,
        base=base,
    )
    return batch.encode()


async def _post(receiver: Receiver, body: bytes) -> Accepted:
    return await receiver.receive(SRC, signing.sign(KEY, body), body)


async def _settle(producer: FakeProducer, *posts: asyncio.Task[Accepted]) -> list[Accepted]:
    while not all(p.done() for p in posts):
        producer.ack()
        await asyncio.sleep(0.01)
    return [p.result() for p in posts]


async def test_batches_arriving_out_of_order_are_produced_in_order(dedup: DedupStore) -> None:
    producer = FakeProducer()
    receiver = _receiver(producer, dedup)
    posts = [
        asyncio.create_task(_post(receiver, _body(seq, 0, f"r{seq}a", f"r{seq}b")))
        for seq in (2, 1, 0)
    ]
    results = await _settle(producer, *posts)
    assert producer.queued == [b"r0a", b"r0b", b"r1a", b"r1b", b"r2a", b"r2b"]
    assert [r.produced for r in results] == [2, 2, 2]


async def test_the_next_batch_is_queued_while_the_last_is_still_being_produced(
    dedup: DedupStore,
) -> None:
    producer = FakeProducer()
    receiver = _receiver(producer, dedup)
    first = asyncio.create_task(_post(receiver, _body(0, 0, "a")))
    second = asyncio.create_task(_post(receiver, _body(1, 0, "b")))
    await asyncio.wait_for(producer.until_queued(2), 5)
    assert not first.done()  # nobody answered before the broker acknowledged
    assert producer.queued == [b"a", b"b"]
    await _settle(producer, first, second)


async def test_a_resend_racing_its_original_produces_each_record_once(dedup: DedupStore) -> None:
    producer = FakeProducer()
    receiver = _receiver(producer, dedup)
    original = asyncio.create_task(_post(receiver, _body(0, 0, "a", "b")))
    await asyncio.wait_for(producer.until_queued(1), 5)
    # a restarted sender's new stream re-sends the same records, and one more, before the ack
    resent = asyncio.create_task(_post(receiver, _body(0, 0, "a", "b", "c", stream="s2")))
    first, second = await _settle(producer, original, resent)
    assert producer.queued == [b"a", b"b", b"c"]
    assert (first.produced, second.produced, second.duplicates) == (2, 1, 2)


async def test_a_batch_whose_predecessor_never_comes_is_refused_then_accepted_later(
    dedup: DedupStore,
) -> None:
    producer = FakeProducer()
    receiver = _receiver(producer, dedup, order_wait_s=0.1)
    with pytest.raises(Rejected) as refused:
        await _post(receiver, _body(1, 0, "b"))
    assert (refused.value.status, refused.value.code) == (503, "out_of_order")
    assert producer.queued == []
    await _settle(producer, asyncio.create_task(_post(receiver, _body(0, 0, "a"))))
    await _settle(producer, asyncio.create_task(_post(receiver, _body(1, 0, "b"))))
    assert producer.queued == [b"a", b"b"]


async def test_a_receiver_that_never_saw_a_stream_starts_it_at_the_senders_base() -> None:
    order = StreamOrder(wait_s=0.1)
    await order.turn(SRC, "s", seq=7, base=7)  # 0..6 were answered 2xx by a former process
    with pytest.raises(OutOfTurn):
        await order.turn(SRC, "s", seq=9, base=7)
    order.applied(SRC, "s", 7)
    waiting = asyncio.create_task(order.turn(SRC, "s", seq=9, base=7))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await order.turn(SRC, "s", seq=5, base=7)  # a re-send of an applied batch goes at once
    order.applied(SRC, "s", 8)
    await asyncio.wait_for(waiting, 1)
    await order.turn(SRC, "", seq=3, base=0)  # a batch without a stream is not ordered
