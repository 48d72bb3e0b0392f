"""The lifecycle endpoints over HTTP on a real Kafka: 409 JSON for an illegal request, stop and
delete of a waiting job, and the acceptance deadline's timer (a peer that never answers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, PIPELINE, Databases, job_yaml

from fedcore.settings import PartySettings
from flow_server.app import create_app

pytestmark = pytest.mark.kafka

BASE = "http://127.0.0.1:9380/flow-server"  # the Host a loopback flow_server answers


@pytest.fixture(scope="module")
async def env(
    kafka: Any, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    root = tmp_path_factory.mktemp("flow_lifecycle")
    settings = PartySettings(
        party_id="10000",
        kafka_bootstrap=kafka.bootstrap,
        peers={"20000": "http://127.0.0.1:9"},  # never answers
        state_dir=root / "state",
        database_url=module_databases.new("lifecycle"),
        accept_timeout_s=1.0,
    )
    app = create_app(settings, catalog=CATALOG)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client, root


async def submit(client: httpx.AsyncClient, root: Path) -> str:
    guest, host = root / "guest.csv", root / "host.csv"
    guest.write_text("id,y\n1,0\n")
    host.write_text("id,x\n1,2\n")
    r = await client.post("/pipelines", files={"file": ("pipeline.yaml", PIPELINE)})
    pid = r.json()["pipeline_id"]
    r = await client.post(
        f"/pipelines/{pid}/jobs",
        files={"parameters": ("job.yaml", job_yaml(guest, host, root / "out"))},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["job_id"])


async def test_illegal_requests_are_409_and_stop_then_delete_work(
    env: tuple[httpx.AsyncClient, Path],
) -> None:
    client, root = env
    job_id = await submit(client, root)
    for action in ("resume", "pause", "rerun"):
        r = await client.post(f"/jobs/{job_id}/{action}")
        assert r.status_code == 409, (action, r.text)
        assert r.json()["code"] == "illegal_transition"
        assert "waiting" in r.json()["message"]
    r = await client.delete(f"/jobs/{job_id}")
    assert r.status_code == 409  # stop it first
    r = await client.post(f"/jobs/{job_id}/stop")
    assert r.status_code == 200 and r.json()["state"] == "canceled"
    assert r.json()["reason"] == "stopped on party 10000"
    view = (await client.get(f"/jobs/{job_id}")).json()
    member = {m["party_id"]: m for m in view["members"]}
    assert member["10000"]["job_state"] == "canceled" and member["20000"]["job_state"] is None
    r = await client.post(f"/jobs/{job_id}/stop")
    assert r.status_code == 409
    assert (await client.delete(f"/jobs/{job_id}")).status_code == 204
    assert (await client.get(f"/jobs/{job_id}")).status_code == 404
    assert (await client.post("/jobs/nope/stop")).status_code == 404


async def test_a_peer_that_never_answers_times_the_job_out(
    env: tuple[httpx.AsyncClient, Path],
) -> None:
    client, root = env
    job_id = await submit(client, root)
    for _ in range(100):
        view = (await client.get(f"/jobs/{job_id}")).json()
        if view["state"] != "waiting":
            break
        await asyncio.sleep(0.1)
    assert view["state"] == "timeout"
    assert view["reason"] == "no answer to the proposal from party 20000 within 1 s"
