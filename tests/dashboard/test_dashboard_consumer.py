"""The consumer loop and the change stream, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager

from aiokafka.errors import KafkaConnectionError
from dashboard_helpers import JOB, eventually, job_status, sample_job
from dashboard_helpers import OTHER as STALE

from dashboard.aggregator import Aggregator
from dashboard.consumer import Changes, Consumer, MemorySource
from dashboard.events import change_stream
from fedcore.envelope import Envelope


class _FlakySource:
    """Fails to connect once, then replays its records (counting how often it was opened)."""

    def __init__(self, envelopes: list[Envelope]) -> None:
        self.opened = 0
        self._memory = MemorySource(envelopes)

    @asynccontextmanager
    async def open(self) -> AsyncIterator[AsyncIterable[Envelope]]:
        self.opened += 1
        if self.opened == 1:
            raise KafkaConnectionError("broker not reachable")
        async with self._memory.open() as records:
            yield records

    async def set_aside(self, env: Envelope, reason: str) -> None:
        await self._memory.set_aside(env, reason)


async def test_the_consumer_retries_after_a_kafka_error_and_replays_into_a_clear_view() -> None:
    source = _FlakySource(sample_job(JOB, 1.0))
    aggregator, changes = Aggregator(), Changes()
    aggregator.apply(job_status(STALE, "running", 0.5))  # must not survive the replay
    consumer = Consumer(source, aggregator, changes, retry_s=0.01)
    consumer.start()
    try:

        async def probe() -> bool | None:
            job = aggregator.get(JOB)
            return (job is not None and job.state == "success") or None

        await eventually(probe, timeout_s=5)
        assert source.opened == 2
        assert aggregator.get(STALE) is None
        assert consumer.status.connected and consumer.status.error is None
        assert changes.version > 0
    finally:
        await consumer.stop(timeout_s=2)
        await consumer.stop(timeout_s=2)  # idempotent
    assert consumer.status.stopped and not consumer.status.connected


async def test_the_change_stream_pushes_on_change_and_ends_on_close() -> None:
    changes = Changes()
    stream = change_stream(changes, heartbeat_s=0.05, min_interval_s=0)
    assert await anext(stream) == "retry: 5000\n\n"
    assert await anext(stream) == 'event: change\ndata: {"version": 0}\n\n'
    assert await anext(stream) == ": keep-alive\n\n"  # nothing changed within the heartbeat
    changes.notify()
    changes.notify()
    assert await anext(stream) == 'event: change\ndata: {"version": 2}\n\n'  # coalesced
    changes.close()
    assert [chunk async for chunk in stream] == []


async def test_a_waiting_listener_is_woken_by_close() -> None:
    changes = Changes()
    waiter = asyncio.create_task(changes.wait_past(0, timeout_s=30))
    await asyncio.sleep(0)
    changes.close()
    assert await asyncio.wait_for(waiter, 1) == 0


GOOD, LATE = "3" * 32, "4" * 32


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


async def test_records_the_aggregator_cannot_apply_are_set_aside_and_the_consumer_goes_on() -> None:
    poison = [
        job_status("1" * 32, "running", 1.0, parties={"guest": 5}),
        Envelope(
            type="metric", job_id="2" * 32, src="20000", body={"name": "x", "value": _nested(5000)}
        ),
    ]
    source = MemorySource([*poison, *sample_job(GOOD, 2.0)])
    aggregator, changes = Aggregator(), Changes()
    consumer = Consumer(source, aggregator, changes)
    consumer.start()
    try:

        async def done() -> bool | None:
            job = aggregator.get(GOOD)
            return (job is not None and job.state == "success") or None

        await eventually(done, timeout_s=5)
        assert [env for env, _ in source.set_aside_envelopes] == poison
        reasons = [reason for _, reason in source.set_aside_envelopes]
        assert reasons[0].startswith("dashboard refuses job.status: JobStatus:")
        assert "parties: Input should be a valid list" in reasons[0]
        assert reasons[1].startswith("dashboard refuses metric:")
        assert "nested deeper than" in reasons[1]
        assert all(len(r) <= 512 for r in reasons)
        assert consumer.status.set_aside == 2 and consumer.status.error is None

        source.publish(job_status(LATE, "running", 3.0))  # still following

        async def late() -> bool | None:
            return aggregator.get(LATE) is not None or None

        await eventually(late, timeout_s=5)
    finally:
        await consumer.stop(timeout_s=2)
