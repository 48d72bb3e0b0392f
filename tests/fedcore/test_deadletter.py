"""Dead letters on a real broker: the message unchanged on fl.dead, with its reason in headers."""

import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRecord

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus
from fedcore.deadletter import MAX_REASON_CHARS, DeadLetters, bounded
from fedcore.envelope import Envelope


def test_bounded_keeps_one_short_line() -> None:
    assert bounded("a\nb   c") == "a b c"
    cut = bounded("x" * 10_000, 300)
    assert len(cut) == 300 and cut.startswith("xxx") and "more chars" in cut


async def _dead_record(kafka: Broker, job_id: str) -> ConsumerRecord:
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async for record in consumer:
            if record.key == job_id.encode():
                return record
    finally:
        await consumer.stop()
    raise AssertionError("unreachable")


async def test_an_envelope_is_set_aside_with_its_reason(kafka: Broker) -> None:
    job = uuid.uuid4().hex
    env = Envelope(type="job.stop", job_id=job, src="20000", dst="10000", body={"x": 1})
    counted: list[int] = []
    async with Bus(kafka.bootstrap, "t") as bus:
        dead = DeadLetters(bus, "flow_server", on_dead=lambda: counted.append(1))
        await dead.put_envelope(
            env, "not a party\nof the job " + "z" * 5000, source="fl.in.ctl/0/7"
        )
    record = await asyncio.wait_for(_dead_record(kafka, job), 30)
    headers = {k: v.decode() for k, v in record.headers}
    assert Envelope.from_bytes(record.value) == env
    assert headers["dead_service"] == "flow_server"
    assert headers["dead_source"] == "fl.in.ctl/0/7"
    assert headers["dead_reason"].startswith("not a party of the job zzz")
    assert len(headers["dead_reason"]) == MAX_REASON_CHARS
    assert headers["src"] == "20000" and headers["type"] == "job.stop"
    assert dead.count == 1 and counted == [1]


async def test_a_record_larger_than_one_record_keeps_its_head(kafka: Broker) -> None:
    job = uuid.uuid4().hex
    async with Bus(kafka.bootstrap, "t", max_record_bytes=10_000) as bus:
        await DeadLetters(bus, "bridge").put_raw(
            job.encode(), b"\x01" * 50_000, [("dead_reason", b"forged")], "too big", source="x"
        )
    record = await asyncio.wait_for(_dead_record(kafka, job), 30)
    headers = dict(record.headers)
    assert record.value == b"\x01" * 10_000
    assert headers["dead_truncated_from"] == b"50000"
    assert headers["dead_reason"] == b"too big"  # a forged dead_* header is not kept
