"""The bus on a real broker: ordered per job, large envelopes chunked and reassembled, commits."""

import asyncio
import time
import uuid

import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from brokers import Broker
from fedcore.bus import Bus, RawRecord, ensure_topics
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


async def test_an_undecodable_record_is_skipped_and_later_ones_still_arrive(kafka: Broker) -> None:
    topic = "fl.status"
    job = uuid.uuid4().hex
    async with Bus(kafka.bootstrap, "t") as bus:
        await bus.publish_raw(topic, job.encode(), b"\xc1 not msgpack", [("id", b"x")])
        await bus.publish(topic, Envelope(type="after", job_id=job, src="1"))
        group = f"g-{uuid.uuid4().hex}"
        async with bus.subscribe([topic], group_id=group) as sub:

            async def first_mine() -> Envelope:
                async for env in sub:
                    if env.job_id == job:
                        return env
                raise AssertionError("subscription ended")

            env = await asyncio.wait_for(first_mine(), 30)
            assert env.type == "after"
            assert sub.skipped >= 1


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
