"""Bridges killed (SIGKILL) or stopped mid-stream, as real processes on the real brokers: every
record arrives exactly once (counted by id on the receiving topic), in order per job.

Parties 12000 and 22000, so the consumer groups and de-duplication state are this module's own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import ConsumerRecord
from bridge_procs import BridgeProcess, Tail, free_port, id_in, keygen, stopped_after

from fedcore import topics
from fedcore.bus import Bus, RawRecord
from fedcore.envelope import Envelope
from federation_bridge.dedup import DedupStore
from federation_bridge.recovery import recover_pending

pytestmark = pytest.mark.kafka

SRC, DST = "12000", "22000"
# small batches: a stream of a few hundred records takes seconds, so a kill lands mid-stream
SMALL = {"BRIDGE_BATCH_MAX_RECORDS": "4", "BRIDGE_BUFFER_MAX_RECORDS": "50"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keygen(tmp_path_factory.mktemp("keys"), SRC, DST)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus_a(kafka_pair: Any) -> AsyncIterator[Bus]:
    async with Bus(kafka_pair[0].bootstrap, client_id="test-faults-a") as bus:
        yield bus


def _pair(kafka_pair: Any, keys: Path, root: Path) -> tuple[BridgeProcess, BridgeProcess]:
    broker_a, broker_b = kafka_pair
    port_a, port_b = free_port(), free_port()
    a = BridgeProcess(root, SRC, broker_a.bootstrap, port_a, {DST: port_b}, keys, SMALL)
    b = BridgeProcess(root, DST, broker_b.bootstrap, port_b, {SRC: port_a}, keys)
    return a, b


def _stream(jobs: int, per_job: int) -> list[Envelope]:
    """Records of several jobs, interleaved as concurrent jobs would write them."""
    names = [uuid.uuid4().hex for _ in range(jobs)]
    return [
        Envelope(
            type="fed", job_id=job, task="t", src=SRC, dst=DST, body={"i": i, "pad": "x" * 200}
        )
        for i in range(per_job)
        for job in names
    ]


def _check_exactly_once_in_order(envs: list[Envelope], got: list[ConsumerRecord]) -> None:
    counts = Counter(dict(r.headers)["id"] for r in got)
    missing = [e.id for e in envs if counts[e.id.encode()] == 0]
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not missing, f"{len(missing)} records lost"
    assert not twice, f"{len(twice)} records duplicated"
    sent: dict[str, list[bytes]] = defaultdict(list)
    for e in envs:
        sent[e.job_id].append(e.to_bytes())
    arrived: dict[str, list[bytes]] = defaultdict(list)
    for r in got:  # one job's records share a key, so a partition: its order is the job's order
        arrived[r.key.decode()].append(r.value)
    assert arrived == sent


async def _publish(bus: Bus, envs: list[Envelope]) -> None:
    records = [
        RawRecord(topics.OUT_FED, e.job_id.encode(), e.to_bytes(), e.headers()) for e in envs
    ]
    await (await bus.queue_raw_many(records))


async def _kill_mid_stream(
    victim: BridgeProcess, tail: Tail, ids: set[bytes], after: int, down_s: float
) -> list[ConsumerRecord]:
    """Wait until ``after`` records arrived, SIGKILL ``victim``, restart it after ``down_s``."""
    got = await tail.collect(id_in(ids), count=after, settle_s=0)
    assert len(got) < len(ids), "the stream ended before the kill; make it longer"
    victim.kill()
    await asyncio.sleep(down_s)
    await asyncio.to_thread(victim.start)
    return got


@pytest.mark.parametrize(("victim", "down_s"), [("sending", 0.5), ("receiving", 2.0)])
async def test_sigkill_of_a_bridge_loses_and_repeats_nothing(
    kafka_pair: Any, keys: Path, bus_a: Bus, tmp_path: Path, victim: str, down_s: float
) -> None:
    a, b = _pair(kafka_pair, keys, tmp_path)
    envs = _stream(jobs=4, per_job=150)
    ids = {e.id.encode() for e in envs}
    with stopped_after(a, b):
        await asyncio.to_thread(b.start)
        await asyncio.to_thread(a.start)
        async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
            await _publish(bus_a, envs)
            killed = a if victim == "sending" else b
            got = await _kill_mid_stream(killed, tail, ids, after=60, down_s=down_s)
            got += await tail.collect(
                id_in(ids), count=len(ids) - len(got), settle_s=3, timeout_s=60
            )
        _check_exactly_once_in_order(envs, got)


async def test_a_peer_stopped_for_a_while_gets_everything_once_in_order(
    kafka_pair: Any, keys: Path, bus_a: Bus, tmp_path: Path
) -> None:
    a, b = _pair(kafka_pair, keys, tmp_path)
    first, during = _stream(jobs=2, per_job=20), _stream(jobs=3, per_job=40)
    envs = first + during
    ids = {e.id.encode() for e in envs}
    with stopped_after(a, b):
        await asyncio.to_thread(b.start)
        await asyncio.to_thread(a.start)
        async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
            await _publish(bus_a, first)
            got = await tail.collect(
                id_in({e.id.encode() for e in first}), count=len(first), settle_s=0
            )
            assert await asyncio.to_thread(b.stop)
            await _publish(bus_a, during)  # written while the peer is down: they wait in Kafka
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                sender = (await a.health())["sender"]
                assert sender["running"], sender
            peer = sender["peers"][DST]
            assert peer["failed_attempts"] > 0 and peer["last_error"]
            # backpressure: no more than a full buffer (batches in flight included) and the record
            # that did not fit
            assert sender["in_flight"] <= 50 + 1
            await asyncio.to_thread(b.start)
            got += await tail.collect(
                id_in(ids), count=len(envs) - len(got), settle_s=3, timeout_s=60
            )
        _check_exactly_once_in_order(envs, got)
        metrics = await a.metrics()
        assert metrics[f'tessera_bridge_send_retries_total{{peer="{DST}"}}'] > 0


async def test_recovery_settles_records_left_pending_by_a_crash(
    kafka_pair: Any, tmp_path: Path
) -> None:
    """What a SIGKILL between produce and remember leaves: one record in Kafka, one not."""
    bootstrap = kafka_pair[1].bootstrap
    reached = (SRC, uuid.uuid4().hex, "")
    lost = (SRC, uuid.uuid4().hex, "")
    async with DedupStore(tmp_path / "dedup.sqlite", retention_s=3600) as dedup:
        assert await dedup.claim([(reached, topics.IN_FED), (lost, topics.IN_FED)]) == set()
        async with Bus(bootstrap, client_id="test-recovery") as bus:
            headers = [("src", SRC.encode()), ("id", reached[1].encode())]
            await (await bus.queue_raw_many([RawRecord(topics.IN_FED, b"k", b"v", headers)]))
        assert await recover_pending(dedup, bootstrap) == (1, 1)
        assert await dedup.pending() == []
        assert await dedup.seen([reached, lost]) == {reached}
