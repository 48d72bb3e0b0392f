"""The dashboard on a real broker: records published with fedcore's Bus show up in the API and
pages, live changes are pushed as Server-Sent Events, and a restarted dashboard goes on from its
database and its committed offsets (on SQLite and PostgreSQL): what was published while it was
down shows up once, nothing is read twice, and its history outlives the topics' records.

Each test is a party of its own (a random party id), so each has a consumer group of its own on
the session's broker."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from dashboard_helpers import GUEST, LOSSES, eventually, log, metric, sample_job, serving

from backends import Databases
from brokers import Broker, free_port
from dashboard.app import create_app
from dashboard.consumer import TOPICS
from dashboard.server import Server
from fedcore import topics
from fedcore.bus import Bus, partitions
from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from unreadable_records import publish_unreadable

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


def _settings(kafka: Broker, tmp_path: Path, database_url: str | None = None) -> PartySettings:
    return PartySettings(
        party_id=str(random.randrange(30_000, 10**9)),
        kafka_bootstrap=kafka.bootstrap,
        state_dir=tmp_path,
        dashboard_database_url=database_url,
    )


async def _publish(bus: Bus, envelopes: list[Envelope]) -> None:
    for env in envelopes:
        await bus.publish(_topic(env), env)


async def test_published_records_are_served_and_pushed_as_they_arrive(
    kafka: Broker, tmp_path: Path
) -> None:
    job_id = uuid.uuid4().hex
    settings = _settings(kafka, tmp_path)
    async with Bus(kafka.bootstrap, "dashboard-test") as bus:
        await _publish(bus, sample_job(job_id))

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


async def _everything(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    view = await _complete_view(client, job_id)
    view["logs"] = (await client.get(f"/api/jobs/{job_id}/logs")).json()
    return view


async def test_a_restarted_dashboard_goes_on_from_its_database_and_committed_offsets(
    kafka: Broker, databases: Databases, tmp_path: Path
) -> None:
    first_job, second_job = uuid.uuid4().hex, uuid.uuid4().hex
    settings = _settings(kafka, tmp_path, databases.new("dashboard"))
    late_log = log(first_job, "evaluate", GUEST, "written while the dashboard was down", 2e9)
    later = [*sample_job(second_job), late_log]
    async with Bus(kafka.bootstrap, "dashboard-test") as bus:
        await _publish(bus, sample_job(first_job))
        async with serving(create_app(settings)) as client:
            before = await _everything(client, first_job)
            assert before["logs"]["counts"] == {"info": 1}

        await _publish(bus, later)  # while no dashboard runs
        async with serving(create_app(settings)) as client:
            second = await _everything(client, second_job)

            async def caught_up() -> dict[str, Any] | None:
                view = await _everything(client, first_job)
                return view if view["logs"]["counts"] == {"info": 2} else None

            first = await eventually(caught_up, timeout_s=30)
            health = (await client.get("/health")).json()
            # only what was published while it was down was read: nothing twice
            assert health["consumer"]["records"] == len(later)
            jobs = health["jobs"]  # a new group also read the topics' earlier records

    moved = {"last_seen", "duration_s", "log_counts"}  # the late log line: its latest record
    assert {k: v for k, v in first["detail"].items() if k not in moved} == {
        k: v for k, v in before["detail"].items() if k not in moved
    }
    assert first["detail"]["last_seen"] == 2e9
    assert first["metrics"] == before["metrics"]
    assert [x["line"] for x in first["logs"]["lines"]] == [
        "epoch 4 done",
        "written while the dashboard was down",
    ]
    assert second["detail"]["state"] == "success" and second["logs"]["counts"] == {"info": 1}

    # Kafka's retention may drop every record: the dashboard's history is its own.
    await _delete_all_records(kafka)
    async with serving(create_app(settings)) as client:
        assert await _everything(client, first_job) == first
        assert await _everything(client, second_job) == second
        listed = (await client.get("/api/jobs", params={"limit": 500})).json()
        assert listed["total"] == jobs
        assert {first_job, second_job} <= {j["job_id"] for j in listed["items"]}


async def _delete_all_records(kafka: Broker) -> None:
    """What retention does, at once: every record of the dashboard's topics gone."""
    tps = [
        TopicPartition(topic, p)
        for topic, parts in (await partitions(kafka.bootstrap, TOPICS)).items()
        for p in parts
    ]
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(ends[tp]) for tp in tps if ends[tp]})
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        starts = await consumer.beginning_offsets(tps)
    finally:
        await consumer.stop()
    assert starts == ends  # nothing is left to replay


async def test_stopping_with_an_open_event_stream_is_prompt(kafka: Broker, tmp_path: Path) -> None:
    settings = _settings(kafka, tmp_path)
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


async def test_a_record_the_dashboard_cannot_apply_goes_to_fl_dead(
    kafka: Broker, tmp_path: Path
) -> None:
    """An envelope the dashboard refuses, and records that are no envelope at all (undecodable,
    a chunk header over the bounds), reach fl.dead with their reasons and are counted."""
    poison = Envelope(
        type="job.status",
        job_id=uuid.uuid4().hex,
        src=GUEST,
        body={"state": "running", "parties": {"guest": 5}},
    )
    good = uuid.uuid4().hex
    settings = _settings(kafka, tmp_path)
    async with Bus(kafka.bootstrap, "dashboard-test") as bus:
        await bus.publish(topics.STATUS, poison)
        unreadable = await publish_unreadable(bus, topics.STATUS)
        unreadable |= await publish_unreadable(bus, topics.LOGS)
        for env in sample_job(good):
            await bus.publish(_topic(env), env)
        async with serving(create_app(settings)) as client:
            await _complete_view(client, good)  # read past the poison

            async def counted() -> dict[str, Any] | None:
                health = (await client.get("/health")).json()
                return health if health["consumer"]["set_aside"] >= 5 else None

            assert (await eventually(counted, timeout_s=30))["status"] == "ok"
    wanted = {poison.job_id.encode(), *(key.encode() for key in unreadable)}
    dead: dict[bytes, dict[str, str]] = {}
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:

        async def found() -> bool | None:
            batches = await consumer.getmany(timeout_ms=500)
            for record in (r for records in batches.values() for r in records):
                if record.key in wanted:
                    dead[record.key] = {k: v.decode() for k, v in record.headers}
            return True if set(dead) == wanted else None

        await eventually(found, timeout_s=30)
    finally:
        await consumer.stop()
    assert {headers["dead_service"] for headers in dead.values()} == {"dashboard"}
    assert dead[poison.job_id.encode()]["dead_reason"].startswith("dashboard refuses job.status:")
    sources = {dead[key.encode()]["dead_source"].split("[")[0] for key in unreadable}
    assert sources == {topics.STATUS, topics.LOGS}
    assert any("1000000" in dead[key.encode()]["dead_reason"] for key in unreadable)
