"""The consumer loop (an in-memory source into a real database, on each backend) and the change
stream, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiokafka.errors import KafkaConnectionError
from dashboard_helpers import JOB, eventually, job_status, sample_job
from dashboard_helpers import OTHER as LATER

from dashboard.consumer import Changes, Consumer, MemorySource, Records
from dashboard.events import change_stream
from dashboard.store import Store
from fedcore.envelope import Envelope


class _FlakySource:
    """Fails to connect once, then reads on from its committed position (counting the opens)."""

    def __init__(self, memory: MemorySource) -> None:
        self.opened = 0
        self._memory = memory

    @asynccontextmanager
    async def open(self, on_dead: Callable[[], object]) -> AsyncIterator[Records]:
        self.opened += 1
        if self.opened == 1:
            raise KafkaConnectionError("broker not reachable")
        async with self._memory.open(on_dead) as records:
            yield records

    async def set_aside(self, env: Envelope, reason: str) -> None:
        await self._memory.set_aside(env, reason)


async def _succeeded(store: Store, job_id: str) -> None:
    async def probe() -> bool | None:
        job = await asyncio.to_thread(store.job, job_id)
        return (job is not None and job.state == "success") or None

    await eventually(probe, timeout_s=10)


async def test_the_consumer_retries_after_a_kafka_error_and_resumes_where_it_committed(
    store: Store,
) -> None:
    memory = MemorySource(sample_job(JOB, 1.0))
    source, changes = _FlakySource(memory), Changes()
    consumer = Consumer(source, store, changes, retry_s=0.01)
    consumer.start()
    try:
        await _succeeded(store, JOB)
        assert source.opened == 2
        assert consumer.status.connected and consumer.status.error is None
        assert changes.version > 0
        assert memory.committed == len(sample_job(JOB, 1.0))  # committed once stored
    finally:
        await consumer.stop(timeout_s=2)
        await consumer.stop(timeout_s=2)  # idempotent
    assert consumer.status.stopped and not consumer.status.connected

    # a new consumer on the same database reads only what came after the commit
    memory.publish(job_status(LATER, "running", 2.0))
    again = Consumer(memory, store, Changes())
    again.start()
    try:

        async def later() -> bool | None:
            return await asyncio.to_thread(store.job, LATER) is not None or None

        await eventually(later, timeout_s=10)
        assert again.status.records == 1
        assert (await asyncio.to_thread(store.job, JOB)) is not None
    finally:
        await again.stop(timeout_s=2)


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


async def test_records_it_cannot_apply_are_set_aside_and_the_consumer_goes_on(
    store: Store,
) -> None:
    poison = [
        job_status("1" * 32, "running", 1.0, parties={"guest": 5}),
        Envelope(
            type="metric", job_id="2" * 32, src="20000", body={"name": "x", "value": _nested(5000)}
        ),
    ]
    source = MemorySource([*poison, *sample_job(GOOD, 2.0)])
    consumer = Consumer(source, store, Changes())
    consumer.start()
    try:
        await _succeeded(store, GOOD)
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
            return await asyncio.to_thread(store.job, LATE) is not None or None

        await eventually(late, timeout_s=10)
    finally:
        await consumer.stop(timeout_s=2)


async def test_a_record_the_database_refuses_is_set_aside_and_its_batch_is_kept(
    store: Store,
) -> None:
    """``proposal.decision`` has no model; a time beyond 64 bits fits no database column. The
    batch it came in is written again one envelope at a time, so only it is lost."""
    refused = Envelope(
        type="proposal.decision",
        job_id=LATE,
        src="10000",
        body={"decision": "accepted", "rule": "r", "decided_by": "policy", "decided_ms": 2**70},
    )
    source = MemorySource([job_status(LATE, "running", 1.0), refused, *sample_job(GOOD, 2.0)])
    consumer = Consumer(source, store, Changes())
    consumer.start()
    try:
        await _succeeded(store, GOOD)
        assert [env for env, _ in source.set_aside_envelopes] == [refused]
        (reason,) = [reason for _, reason in source.set_aside_envelopes]
        assert reason.startswith("dashboard cannot apply proposal.decision:")
        assert str(2**70) not in reason  # no received value in the reason
        late = await asyncio.to_thread(store.job, LATE)
        assert late is not None and late.state == "running" and late.decisions == {}
        assert consumer.status.set_aside == 1 and source.committed == 2 + len(sample_job(GOOD))
    finally:
        await consumer.stop(timeout_s=2)
