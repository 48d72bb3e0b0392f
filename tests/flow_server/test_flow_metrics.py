"""The flow_server's ``GET /metrics`` on a real broker: jobs by state, events applied by type,
heartbeats read (in memory only) and lost steps. Runs once per database backend."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, Databases
from prometheus_client.parser import text_string_to_metric_families

from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from flow_server.app import create_app

pytestmark = pytest.mark.kafka

ME = "30000"  # a party (and consumer group) of its own on the shared broker


@pytest.fixture(scope="module")
async def env(
    kafka: Any, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Bus]]:
    root = tmp_path_factory.mktemp("flow_metrics")
    settings = PartySettings(
        party_id=ME,
        kafka_bootstrap=kafka.bootstrap,
        state_dir=root / "state",
        database_url=module_databases.new("metrics"),
        heartbeat_interval_s=0.1,
    )
    app = create_app(settings, catalog=CATALOG)
    bus = Bus(kafka.bootstrap, client_id="flow-metrics-test")
    async with app.router.lifespan_context(app), bus:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:9380"
        ) as client:
            yield client, bus


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_jobs_by_state_start_at_zero(env: tuple[httpx.AsyncClient, Bus]) -> None:
    client, _ = env
    metrics = await scrape(client)
    for state in ("waiting", "running", "success", "failed"):
        assert metrics[("tessera_flow_server_jobs", (("state", state),))] == 0
    assert metrics[("tessera_flow_server_watched_steps", ())] == 0
    assert metrics[("tessera_flow_server_lost_steps_total", ())] == 0


async def test_heartbeats_and_applied_events_are_counted(
    env: tuple[httpx.AsyncClient, Bus],
) -> None:
    client, bus = env
    before = await scrape(client)
    beat = Envelope(
        type="worker.heartbeat",
        job_id="",
        src=ME,
        body={"party": ME, "worker": "h:1:2", "interval_s": 5.0, "running": []},
    )
    status = Envelope(  # of a job this party does not know: applied (a no-op) all the same
        type="task.status",
        job_id=uuid.uuid4().hex,
        task="train",
        src=ME,
        body={"party": ME, "state": "running", "attempt": 1},
    )
    await bus.publish(topics.STATUS, beat)
    await bus.publish(topics.STATUS, status)
    heartbeats = ("tessera_flow_server_heartbeats_total", ())
    applied = ("tessera_flow_server_events_applied_total", (("type", "task.status"),))
    for _ in range(300):
        after = await scrape(client)
        if after[heartbeats] > before.get(heartbeats, 0) and after.get(applied, 0) > before.get(
            applied, 0
        ):
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail(f"heartbeat and status not counted: {after}")
