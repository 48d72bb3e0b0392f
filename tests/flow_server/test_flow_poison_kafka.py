"""Poison on the real broker: envelopes the flow_server cannot apply, produced onto the topics it
consumes, land on fl.dead with their reasons; the consumer keeps running, and a legitimate
proposal right after them is answered."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from flow_helpers import CATALOG, PIPELINE, Databases
from prometheus_client.parser import text_string_to_metric_families

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from fedcore.version import TESSERA_VERSION
from flow_server.app import create_app
from unreadable_records import publish_unreadable

pytestmark = pytest.mark.kafka

ME, PEER = "10000", "20000"
BASE = "http://127.0.0.1:9380/flow-server"  # the Host a loopback flow_server answers


@pytest.fixture(scope="module")
async def served(
    kafka: Broker, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Bus, Path]]:
    root = tmp_path_factory.mktemp("flow_poison")
    settings = PartySettings(
        party_id=ME,
        kafka_bootstrap=kafka.bootstrap,
        peers={PEER: "http://127.0.0.1:9"},
        state_dir=root / "state",
        database_url=module_databases.new("poison"),
        input_grants={PEER: [root]},  # the proposals name data under root
    )
    app = create_app(settings, catalog=CATALOG)
    bus = Bus(kafka.bootstrap, client_id="flow-poison-test")
    async with app.router.lifespan_context(app), bus:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client, bus, root


def _proposal(job_id: str, data: Path, **change: Any) -> Envelope:
    body = {
        "pipeline": PIPELINE,
        "pipeline_name": "hetero-lr",
        "parties": [f"{PEER}=guest", f"{ME}=host"],
        "common_args": {},
        "party_args": {"input": str(data)},
        "initiator": PEER,
        "tessera_version": TESSERA_VERSION,
        "component_versions": {name: info.version for name, info in CATALOG.items()},
    }
    return Envelope(type="job.propose", job_id=job_id, src=PEER, dst=ME, body={**body, **change})


async def _dead_letters(bootstrap: str, wanted: set[str], timeout_s: float = 60) -> dict[str, Any]:
    """job id → the fl.dead record of each job id in ``wanted``."""
    found: dict[str, ConsumerRecord] = {}
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()

    async def scan() -> None:
        async for record in consumer:
            key = (record.key or b"").decode()
            if key in wanted:
                found[key] = record
                if set(found) == wanted:
                    return

    try:
        await asyncio.wait_for(scan(), timeout_s)
    finally:
        await consumer.stop()
    return found


async def _answer(bus: Bus, job_id: str, timeout_s: float = 60) -> Envelope:
    async def scan() -> Envelope:
        async with bus.subscribe([topics.OUT_CTL], group_id=f"t-{uuid.uuid4().hex}") as sub:
            async for env in sub:
                if env.job_id == job_id and env.type in ("job.accept", "job.reject"):
                    return env
        raise AssertionError("the subscription ended")

    return await asyncio.wait_for(scan(), timeout_s)


async def test_poison_is_set_aside_and_the_next_proposal_is_answered(
    served: tuple[httpx.AsyncClient, Bus, Path],
) -> None:
    client, bus, root = served
    data = root / "host.csv"
    data.write_text("id,x\n1,0.5\n")
    jobs = [uuid.uuid4().hex for _ in range(4)]
    poison = [
        (topics.IN_CTL, _proposal(jobs[0], data, common_args={"max-iter": b"\x00\xff"})),
        (
            topics.IN_CTL,
            Envelope(
                type="task.status",
                job_id=jobs[1],
                task="train",
                src=PEER,
                dst=ME,
                body={"party": PEER, "state": "running", "attempt": 2**70},
            ),
        ),
        (
            topics.IN_CTL,
            Envelope(
                type="job.rerun",
                job_id=jobs[2],
                src=PEER,
                dst=ME,
                body={"attempts": {"train": 2**70}},
            ),
        ),
        (
            topics.STATUS,
            Envelope(
                type="worker.heartbeat",
                job_id="",
                src=ME,
                body={"party": ME, "worker": "w", "interval_s": 5.0, "running": [{"x": 1}]},
            ),
        ),
    ]
    for topic, env in poison:
        await bus.publish(topic, env)
    # not even envelopes: the subscription sets them aside itself
    unreadable = await publish_unreadable(bus, topics.IN_CTL)

    dead = await _dead_letters(bus.bootstrap, set(jobs[:3]) | {""} | unreadable)
    reasons = {key: dict(r.headers)["dead_reason"].decode() for key, r in dead.items()}
    assert "common_args" in reasons[jobs[0]]
    assert "attempt" in reasons[jobs[1]]
    assert "attempts.train" in reasons[jobs[2]]
    assert "running.0" in reasons[""]
    assert any("1000000" in reasons[key] for key in unreadable)
    for key in unreadable:
        assert dict(dead[key].headers)["dead_source"].startswith(f"{topics.IN_CTL}[".encode())
    for record in dead.values():
        headers = dict(record.headers)
        assert headers["dead_service"] == b"flow_server"
        assert len(headers["dead_reason"]) <= 512

    health = (await client.get("/health")).json()
    assert health["consumer"] == "running"

    job_id = uuid.uuid4().hex
    await bus.publish(topics.IN_CTL, _proposal(job_id, data))
    answer = await _answer(bus, job_id)
    assert answer.type == "job.accept" and answer.dst == PEER

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(
            (await client.get("http://127.0.0.1:9380/metrics")).text
        )
        for s in family.samples
    }
    dead_total = sum(
        value
        for (name, _), value in samples.items()
        if name == "tessera_flow_server_dead_letters_total"
    )
    assert dead_total >= 6
