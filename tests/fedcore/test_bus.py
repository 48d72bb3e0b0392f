"""The bus on a real broker: ordered per job, large envelopes chunked and reassembled, commits,
and what a consumer cannot hand out (bad records, unbounded or stale chunks) set aside."""

import asyncio
import time
import uuid

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus, ChunkLimits, RawRecord, Subscription, ensure_topics, parse_chunk
from fedcore.deadletter import DeadLetters
from fedcore.envelope import Envelope


async def _collect(bus: Bus, topic: str, group: str, n: int) -> list[Envelope]:
    out: list[Envelope] = []
    async with bus.subscribe([topic], group_id=group) as sub:
        async for env in sub:
            out.append(env)
            await sub.commit()
            if len(out) == n:
                break
    return out


async def _fresh_topic(kafka: Broker) -> str:
    """A topic of this test's own: the session brokers carry other tests' records."""
    topic = f"test.bus.{uuid.uuid4().hex}"
    await ensure_topics(kafka.bootstrap, [topic])
    return topic


async def test_large_envelopes_are_chunked_and_reassembled(kafka: Broker) -> None:
    topic = await _fresh_topic(kafka)
    big = np.random.default_rng(0).random(60_000)  # ~480 kB, four chunks of 150 kB
    async with Bus(kafka.bootstrap, "t", max_record_bytes=150_000) as bus:
        job = uuid.uuid4().hex
        await bus.publish(topic, Envelope(type="big", job_id=job, src="1", body={"a": big}))
        await bus.publish(topic, Envelope(type="small", job_id=job, src="1", body={"n": 2**200}))
        group = f"g-{uuid.uuid4().hex}"
        got = await asyncio.wait_for(_collect(bus, topic, group, 2), 30)
    assert [e.type for e in got] == ["big", "small"]
    np.testing.assert_array_equal(got[0].body["a"], big)
    assert got[1].body["n"] == 2**200


async def test_committed_group_resumes_after_last_handled(kafka: Broker) -> None:
    topic = await _fresh_topic(kafka)
    job = uuid.uuid4().hex
    group = f"g-{uuid.uuid4().hex}"
    async with Bus(kafka.bootstrap, "t") as bus:
        for i in range(3):
            await bus.publish(topic, Envelope(type="log", job_id=job, src="1", body={"i": i}))
        first = await asyncio.wait_for(_collect(bus, topic, group, 1), 30)
        await bus.publish(topic, Envelope(type="log", job_id=job, src="1", body={"i": 3}))
        rest = await asyncio.wait_for(_collect(bus, topic, group, 3), 30)
    mine = [e.body["i"] for e in first + rest if e.job_id == job]
    assert mine == [0, 1, 2, 3]


async def test_batches_hand_out_what_arrived_and_a_commit_covers_exactly_them(
    kafka: Broker,
) -> None:
    """A consumer that applies a list at a time (the dashboard): chunked envelopes come whole,
    and after a commit a new member of the group starts after the last list handed out."""
    topic = await _fresh_topic(kafka)
    job = uuid.uuid4().hex
    group = f"g-{uuid.uuid4().hex}"
    big = np.arange(40_000, dtype=np.float64)  # ~320 kB: three chunks of 150 kB
    async with Bus(kafka.bootstrap, "t", max_record_bytes=150_000) as bus:
        for i in range(5):
            body = {"i": i, "a": big} if i == 2 else {"i": i}
            await bus.publish(topic, Envelope(type="log", job_id=job, src="1", body=body))

        async def first_lists() -> list[list[int]]:
            lists: list[list[int]] = []
            async with bus.subscribe([topic], group_id=group) as sub:
                async for batch in sub.batches(max_records=2, wait_ms=200):
                    lists.append([e.body["i"] for e in batch])
                    await sub.commit()
                    if sum(map(len, lists)) == 5:
                        break
            return lists

        lists = await asyncio.wait_for(first_lists(), 30)
        await bus.publish(topic, Envelope(type="log", job_id=job, src="1", body={"i": 5}))

        async def after_commit() -> list[int]:
            async with bus.subscribe([topic], group_id=group) as sub:
                async for batch in sub.batches(wait_ms=200):
                    return [e.body["i"] for e in batch]
            return []

        rest = await asyncio.wait_for(after_commit(), 30)
    assert [i for batch in lists for i in batch] == [0, 1, 2, 3, 4]
    assert all(1 <= len(batch) <= 2 for batch in lists)  # at most max_records records each
    assert rest == [5]


async def test_groupless_subscription_replays_from_a_point_in_time(kafka: Broker) -> None:
    topic = "fl.in.fed"
    job = uuid.uuid4().hex
    async with Bus(kafka.bootstrap, "t") as bus:
        await bus.publish(topic, Envelope(type="fed", job_id=job, src="1", body={"i": 0}))
        await asyncio.sleep(0.05)
        since_ms = int(time.time() * 1000)
        await asyncio.sleep(0.05)
        await bus.publish(topic, Envelope(type="fed", job_id=job, src="1", body={"i": 1}))
        seen: list[int] = []
        async with bus.subscribe([topic], group_id=None, start_time_ms=since_ms) as sub:

            async def first_mine() -> None:
                async for env in sub:
                    if env.job_id == job:
                        seen.append(env.body["i"])
                        return

            await asyncio.wait_for(first_mine(), 30)
    assert seen == [1]


async def _dead_ids(kafka: Broker, job: str, count: int) -> dict[str, dict[str, bytes]]:
    """The headers of ``count`` records of ``job`` on fl.dead, by their id header."""
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    found: dict[str, dict[str, bytes]] = {}
    try:
        async for record in consumer:
            if record.key == job.encode():
                headers = dict(record.headers)
                found[headers["id"].decode()] = {**headers, "value": record.value}
                if len(found) == count:
                    return found
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def _first_of(sub: Subscription, job: str) -> Envelope:
    async for env in sub:
        if env.job_id == job:
            return env
    raise AssertionError("subscription ended")


def _chunk(env: Envelope, chunk: str, value: bytes = b"part") -> RawRecord:
    return RawRecord("", env.job_id.encode(), value, [*env.headers(), ("chunk", chunk.encode())])


async def test_what_cannot_be_handed_out_is_dead_lettered_and_committed_past(
    kafka: Broker,
) -> None:
    topic = await _fresh_topic(kafka)
    job = uuid.uuid4().hex
    forged = Envelope(type="fed", job_id=job, src="30000", dst="10000")
    huge, garbage = Envelope(type="x", job_id=job, src="1"), Envelope(type="x", job_id=job, src="1")
    after = Envelope(type="after", job_id=job, src="1")
    group = f"g-{uuid.uuid4().hex}"
    async with Bus(kafka.bootstrap, "t") as bus:
        # not msgpack at all
        await bus.publish_raw(topic, job.encode(), b"\xc1 not msgpack", garbage.headers())
        # a chunk header no message could need: it would never complete
        await bus.publish_raw(topic, job.encode(), b"p", _chunk(huge, "0/1000000").headers)
        # a body that names another src than its headers (which the bridge checked)
        headers = [("src", b"20000") if k == "src" else (k, v) for k, v in forged.headers()]
        await bus.publish_raw(topic, job.encode(), forged.to_bytes(), headers)
        await bus.publish(topic, after)
        dead = DeadLetters(bus, "test")
        async with bus.subscribe([topic], group_id=group, dead_letters=dead) as sub:
            env = await asyncio.wait_for(_first_of(sub, job), 30)
            await sub.commit()
        assert env.id == after.id and sub.skipped == 3 and dead.count == 3
        # committed past all of them: the group starts after ``after``
        await bus.publish(topic, later := Envelope(type="later", job_id=job, src="1"))
        async with bus.subscribe([topic], group_id=group) as sub:
            assert (await asyncio.wait_for(_first_of(sub, job), 30)).id == later.id
    reasons = {k: v["dead_reason"].decode() for k, v in (await _dead_ids(kafka, job, 3)).items()}
    assert "not a valid message" in reasons[garbage.id]
    assert "at most" in reasons[huge.id] and "chunks" in reasons[huge.id]
    assert "src" in reasons[forged.id]


async def test_a_stale_partial_message_is_dropped_and_the_commit_moves_past_it(
    kafka: Broker,
) -> None:
    topic = await _fresh_topic(kafka)
    job = uuid.uuid4().hex
    lost = Envelope(type="lost", job_id=job, src="1")
    group = f"g-{uuid.uuid4().hex}"
    limits = ChunkLimits(max_partial_age_s=0.5)
    async with Bus(kafka.bootstrap, "t", chunk_limits=limits) as bus:
        first = _chunk(lost, "0/3")
        await bus.publish_raw(topic, first.key, first.value, list(first.headers))
        await asyncio.sleep(1.0)  # record time: the next record is over 0.5 s younger
        await bus.publish(topic, after := Envelope(type="after", job_id=job, src="1"))
        dead = DeadLetters(bus, "test")
        async with bus.subscribe([topic], group_id=group, dead_letters=dead) as sub:
            assert (await asyncio.wait_for(_first_of(sub, job), 30)).id == after.id
            await sub.commit()
        assert dead.count == 1
        await bus.publish(topic, later := Envelope(type="later", job_id=job, src="1"))
        async with bus.subscribe([topic], group_id=group) as sub:
            assert (await asyncio.wait_for(_first_of(sub, job), 30)).id == later.id
    [headers] = (await _dead_ids(kafka, job, 1)).values()
    assert b"incomplete" in headers["dead_reason"] and headers["value"] == b"part"


async def test_partial_messages_beyond_the_byte_bound_drop_the_oldest(kafka: Broker) -> None:
    topic = await _fresh_topic(kafka)
    job = uuid.uuid4().hex
    old, new = Envelope(type="old", job_id=job, src="1"), Envelope(type="new", job_id=job, src="1")
    big = np.arange(40_000, dtype=np.float64)  # 320 kB: four chunks of 100 kB
    whole = Envelope(type="whole", job_id=job, src="1", body={"a": big})
    limits = ChunkLimits(max_partial_bytes=450_000)
    async with Bus(kafka.bootstrap, "t", max_record_bytes=100_000, chunk_limits=limits) as bus:
        for env in (old, new):
            first = _chunk(env, "0/2", b"x" * 100_000)
            await bus.publish_raw(topic, first.key, first.value, list(first.headers))
        # its third chunk brings the held bytes to 500 kB: the oldest partial goes, it completes
        await bus.publish(topic, whole)
        async with bus.subscribe([topic], group_id=f"g-{uuid.uuid4().hex}") as sub:
            got = await asyncio.wait_for(_first_of(sub, job), 30)
            assert sub.skipped == 1
    np.testing.assert_array_equal(got.body["a"], big)


def test_chunk_headers_are_parsed_with_bounds() -> None:
    assert parse_chunk("2/3") == (2, 3)
    assert ChunkLimits(max_message_bytes=1000).max_chunks(300) == 4
    for bad in ("3/3", "-1/3", "1/3/4", "a/b", "1 /3", "1/" + "9" * 20, ""):
        with pytest.raises(ValueError):
            parse_chunk(bad)
    with pytest.raises(ValueError, match="at most 4 chunks"):
        parse_chunk("0/5", max_count=4)


async def test_queued_raw_records_keep_the_order_of_one_key(kafka: Broker) -> None:
    topic = await _fresh_topic(kafka)
    key = b"job-1"
    records = [
        RawRecord(topic, key, f"r{i}".encode(), [("id", f"{i}".encode())]) for i in range(300)
    ]
    async with Bus(kafka.bootstrap, "t") as bus:
        await (await bus.queue_raw_many(records))
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    got: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + 30
        while len(got) < len(records) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                got.extend(batch)
    finally:
        await consumer.stop()
    assert [r.value for r in got] == [r.value for r in records]
    assert [list(r.headers) for r in got] == [list(r.headers) for r in records]
