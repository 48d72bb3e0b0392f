"""Two flow_servers, each on its own real Kafka, with a record forwarder in place of the bridges
and a stand-in task engine per party: the example job goes propose → accept → start → success.

The helpers consume as consumer groups (not from a point in time): on a broker whose topics were
just created, a time-based assignment can find no partitions yet and read nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, EXAMPLES, Databases, job_yaml

from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope, new_id
from fedcore.settings import PartySettings
from flow_server.app import create_app

pytestmark = pytest.mark.kafka


async def forward(src: Bus, dst: Bus, peer: str, since_ms: int) -> None:
    """What the two federation bridges do for fl.out.ctl, minus HTTP and signatures."""
    async with src.subscribe([topics.OUT_CTL], group_id=f"test-fwd-{new_id()}") as sub:
        async for env in sub:
            if env.dst == peer and env.ts * 1000 >= since_ms:
                await dst.publish(topics.IN_CTL, env)


async def task_engine(bus: Bus, me: str, jobs: set[str]) -> None:
    """Answers each task.run of our jobs with running, then success and its output paths."""
    async with bus.subscribe([topics.TASKS], group_id=f"test-engine-{new_id()}") as sub:
        async for run in sub:
            if run.job_id not in jobs or run.body.get("party_id") != me:
                continue
            out = run.body["output_dir"]
            for state in ("running", "success"):
                await bus.publish(
                    topics.STATUS,
                    Envelope(
                        type="task.status",
                        job_id=run.job_id,
                        task=run.task,
                        src=me,
                        body={
                            "party": me,
                            "state": state,
                            "outputs": {
                                "data": f"{out}/data",
                                "model": f"{out}/model",
                                "predictions": f"{out}/predictions",
                            },
                        },
                    ),
                )


@contextlib.asynccontextmanager
async def party(
    me: str, peer: str, broker: Any, root: Path, database_url: str
) -> AsyncIterator[tuple[Any, Bus]]:
    settings = PartySettings(
        party_id=me,
        kafka_bootstrap=broker.bootstrap,
        peers={peer: "http://127.0.0.1:9"},
        state_dir=root / me,
        database_url=database_url,
        input_grants={peer: [root]},  # each party lets the other name its test CSVs
    )
    app = create_app(settings, catalog=CATALOG)
    async with app.router.lifespan_context(app), Bus(broker.bootstrap, f"test-{me}") as bus:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:9380/flow-server"
        ) as c:
            yield c, bus


async def test_the_example_job_succeeds_on_both_parties(
    kafka_pair: Any, databases: Databases, tmp_path: Path
) -> None:
    guest_csv, host_csv = tmp_path / "guest.csv", tmp_path / "host.csv"
    guest_csv.write_text("id,y\n1,0\n")
    host_csv.write_text("id,x\n1,1\n")
    since = int(time.time() * 1000) - 1000
    jobs: set[str] = set()
    async with (
        party("10000", "20000", kafka_pair[0], tmp_path, databases.new("g")) as (guest, gbus),
        party("20000", "10000", kafka_pair[1], tmp_path, databases.new("h")) as (host, hbus),
    ):
        helpers = [
            asyncio.create_task(forward(gbus, hbus, "20000", since)),
            asyncio.create_task(forward(hbus, gbus, "10000", since)),
            asyncio.create_task(task_engine(gbus, "10000", jobs)),
            asyncio.create_task(task_engine(hbus, "20000", jobs)),
        ]
        try:
            r = await guest.post(
                "/pipelines", files={"file": ("p.yaml", (EXAMPLES / "pipeline.yaml").read_bytes())}
            )
            pid = r.json()["pipeline_id"]
            r = await guest.post(
                f"/pipelines/{pid}/jobs",
                files={"parameters": ("job.yaml", job_yaml(guest_csv, host_csv, tmp_path / "o"))},
            )
            assert r.status_code == 201, r.text
            job_id = r.json()["job_id"]
            jobs.add(job_id)
            views = {}
            for name, client in (("guest", guest), ("host", host)):
                for _ in range(400):
                    resp = await client.get(f"/jobs/{job_id}")
                    if resp.status_code == 200 and resp.json()["state"] in ("success", "failed"):
                        break
                    await asyncio.sleep(0.1)
                views[name] = resp.json()
        finally:
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
    for name, view in views.items():
        assert view["state"] == "success", (name, view)
        states = {s["name"]: [t["state"] for t in s["tasks"]] for s in view["steps"]}
        assert states == {
            "intersect": ["success", "success"],
            "scale": ["success", "success"],
            "train": ["success", "success"],
            "evaluate": ["success"],
        }
    assert views["host"]["initiator"] == "10000"
    assert views["host"]["pipeline_id"] is None
