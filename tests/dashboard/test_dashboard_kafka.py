"""The dashboard on a real broker: records published with fedcore's Bus show up in the API and
pages, live changes are pushed as Server-Sent Events, and a restarted dashboard rebuilds the same
views by replaying the topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from dashboard_helpers import GUEST, LOSSES, eventually, metric, sample_job, serving

from brokers import Broker, free_port
from dashboard.app import create_app
from dashboard.server import Server
from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings

pytestmark = pytest.mark.kafka

TOPIC_OF = {"job.status": topics.STATUS, "task.status": topics.STATUS, "metric": topics.RESULTS}


def _topic(env: Envelope) -> str:
    return TOPIC_OF.get(env.type, topics.LOGS)


async def _complete_view(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """The job's detail and metrics once the whole sample job has been read."""

    async def probe() -> dict[str, Any] | None:
        detail = await client.get(f"/api/jobs/{job_id}")
        if detail.status_code != 200 or detail.json()["state"] != "success":
            return None
        metrics = (await client.get(f"/api/jobs/{job_id}/metrics")).json()
        return {"detail": detail.json(), "metrics": metrics}

    return await eventually(probe, timeout_s=30)


async def _next_event(lines: Any) -> dict[str, Any]:
    """The data of the next ``change`` event on an SSE line iterator."""
    event = None
    async for line in lines:
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: ") and event == "change":
            data: dict[str, Any] = json.loads(line[len("data: ") :])
            return data
    raise AssertionError("the event stream ended")


async def test_published_records_are_served_and_rebuilt_after_a_restart(kafka: Broker) -> None:
    job_id = uuid.uuid4().hex
    settings = PartySettings(party_id=GUEST, kafka_bootstrap=kafka.bootstrap)
    async with Bus(kafka.bootstrap, "dashboard-test") as bus:
        for env in sample_job(job_id):
            await bus.publish(_topic(env), env)

        async with serving(create_app(settings)) as client:
            view = await _complete_view(client, job_id)
            assert view["detail"]["initiator"] == GUEST
            assert [s["state"] for s in view["detail"]["steps"]] == ["success"] * 3
            assert (view["metrics"]["auc"], view["metrics"]["ks"]) == (0.8125, 0.5)
            assert [p["value"] for p in view["metrics"]["loss"][0]["points"]] == LOSSES

            listed = (await client.get("/api/jobs", params={"state": "success"})).json()
            assert job_id in {j["job_id"] for j in listed["items"]}
            assert job_id in (await client.get("/")).text
            assert (await client.get("/health")).json()["status"] == "ok"

            # A record published now is pushed to an open event stream, then served.
            async with client.stream("GET", "/api/events") as events:
                assert events.headers["content-type"].startswith("text/event-stream")
                lines = events.aiter_lines()
                first = await asyncio.wait_for(_next_event(lines), 10)
                late = metric(job_id, "evaluate", GUEST, "precision", 0.75, time.time(), None)
                await bus.publish(topics.RESULTS, late)
                pushed = await asyncio.wait_for(_next_event(lines), 15)
                assert pushed["version"] > first["version"]
            scalars = (await client.get(f"/api/jobs/{job_id}/metrics")).json()["scalars"]
            assert {m["name"] for m in scalars} == {"auc", "ks", "precision"}
            view = await _complete_view(client, job_id)

    # A new dashboard replays the topics from the beginning into the same view.
    async with serving(create_app(settings)) as client:

        async def rebuilt() -> dict[str, Any] | None:
            again = await _complete_view(client, job_id)
            return again if len(again["metrics"]["scalars"]) == 3 else None

        assert await eventually(rebuilt, timeout_s=30) == view


async def test_stopping_with_an_open_event_stream_is_prompt(kafka: Broker) -> None:
    settings = PartySettings(party_id=GUEST, kafka_bootstrap=kafka.bootstrap)
    port = free_port()
    server = Server(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    serve = asyncio.create_task(server.serve())
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        stream = await eventually(lambda: _open_events(client), timeout_s=10)
        try:
            lines = stream.aiter_lines()
            await asyncio.wait_for(_next_event(lines), 10)
            started = time.monotonic()
            server.request_stop()
            await asyncio.wait_for(serve, 10)
            assert time.monotonic() - started < 3  # not uvicorn's graceful-shutdown timeout
            assert [line async for line in lines if line] == []  # the stream ended cleanly
        finally:
            await stream.aclose()


async def _open_events(client: httpx.AsyncClient) -> httpx.Response | None:
    try:
        return await client.send(client.build_request("GET", "/api/events"), stream=True)
    except httpx.ConnectError:
        return None  # not listening yet


async def test_a_record_the_dashboard_cannot_apply_goes_to_fl_dead(kafka: Broker) -> None:
    poison = Envelope(
        type="job.status",
        job_id=uuid.uuid4().hex,
        src=GUEST,
        body={"state": "running", "parties": {"guest": 5}},
    )
    good = uuid.uuid4().hex
    settings = PartySettings(party_id=GUEST, kafka_bootstrap=kafka.bootstrap)
    async with Bus(kafka.bootstrap, "dashboard-test") as bus:
        await bus.publish(topics.STATUS, poison)
        for env in sample_job(good):
            await bus.publish(_topic(env), env)
        async with serving(create_app(settings)) as client:
            await _complete_view(client, good)  # read past the poison
            health = (await client.get("/health")).json()
            assert health["status"] == "ok" and health["consumer"]["set_aside"] >= 1
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:

        async def found() -> dict[str, str] | None:
            batches = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                if record.key == poison.job_id.encode():
                    return {k: v.decode() for k, v in record.headers}
            return None

        headers = await eventually(found, timeout_s=30)
    finally:
        await consumer.stop()
    assert headers["dead_service"] == "dashboard"
    assert headers["dead_reason"].startswith("dashboard refuses job.status:")
