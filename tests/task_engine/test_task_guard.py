"""A worker never dies on a message (real broker, real sandbox): what it cannot apply fails its
task with the reason and/or goes to ``fl.dead``, the offset moves on, running steps go on.

Received paths are checked too: a job id or step name that is not one plain name, an input or
output dir outside the party's roots (also through a symbolic link) or with a NUL byte.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from test_task_worker import collect, ended, final, running_worker, task_run

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus, partitions
from fedcore.envelope import Envelope
from kube_api_server import FakeApiServer
from task_engine.kubernetes import KubernetesConfig, KubernetesRuntime, WorkerPod
from task_engine.worker import Worker
from unreadable_records import publish_unreadable

pytestmark = pytest.mark.kafka

PARTY = "81000"
PEER = "82000"


@pytest.fixture(scope="module")
async def bus(kafka: Broker) -> AsyncIterator[Bus]:
    async with Bus(kafka.bootstrap, "test-guard") as bus:
        yield bus


async def dead_letters(
    kafka: Broker, keys: set[str], timeout_s: float = 30
) -> list[ConsumerRecord]:
    """The records on fl.dead whose key is one of ``keys`` (one each)."""
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    found: dict[str, ConsumerRecord] = {}

    async def read() -> None:
        async for record in consumer:
            key = (record.key or b"").decode()
            if key in keys:
                found[key] = record
                if len(found) == len(keys):
                    return

    await consumer.start()
    try:
        await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        pytest.fail(f"not all of {keys} reached {topics.DEAD}; got {sorted(found)}")
    finally:
        await consumer.stop()
    return list(found.values())


def headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


async def committed_at_end(kafka: Broker, group: str) -> bool:
    """Whether ``group`` commits every partition of fl.tasks up to its end (within 30 s: the
    worker commits just after it published the task's status)."""
    for _ in range(60):
        if await _committed_at_end(kafka, group):
            return True
        await asyncio.sleep(0.5)
    return False


async def _committed_at_end(kafka: Broker, group: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap)
    await consumer.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        tps = [
            TopicPartition(topics.TASKS, p)
            for p in (await partitions(kafka.bootstrap, [topics.TASKS]))[topics.TASKS]
        ]
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
        await admin.close()
    return all(offsets.get(tp) is not None and offsets[tp].offset == ends[tp] for tp in tps)


def _bad_task_runs(tmp_path: Path) -> dict[str, tuple[Envelope, str]]:
    """Job id → (a task.run that must be refused, words its reason must contain)."""
    outside = tmp_path.parent / f"outside-{uuid.uuid4().hex}.csv"
    outside.write_text("id,x\n1,2\n")
    link = tmp_path / "innocent.csv"
    link.symlink_to(outside)  # under the roots by name, outside them once resolved
    cases: dict[str, tuple[Envelope, str]] = {}

    def case(reason: str, job: str | None = None, **change: Any) -> None:
        job = job or uuid.uuid4().hex
        env = task_run(job, "tick", "te_tick", "guest", PARTY, tmp_path, args={"tick_file": "x"})
        env.body.update(change.pop("body", {}))
        for key, value in change.items():
            setattr(env, key, value)
        cases[job] = (env, reason)

    # (a job id or step name that is no plain name never decodes: fedcore.envelope refuses it)
    case("NUL characters", body={"inputs": {"data": f"{tmp_path}/in\0.csv"}})
    case("outside this party's roots", body={"inputs": {"data": str(link)}})
    case("outside this party's roots", body={"output_dir": "/etc/tessera-out"})
    case("not an absolute path", body={"output_dir": "relative/out"})
    case("attempt", body={"attempt": 2**70})
    case("fed_since_ms", body={"fed_since_ms": None})
    case("extra_key", body={"extra_key": 1})
    return cases


def _made_nothing_outside(tmp_path: Path) -> bool:
    return not os.path.exists("/etc/tessera-out") and not (tmp_path / "relative").exists()


async def test_bad_task_runs_fail_their_task_are_set_aside_and_the_worker_goes_on(
    kafka: Broker, bus: Bus, tmp_path: Path
) -> None:
    async with running_worker(kafka, PARTY, tmp_path, worker_concurrency=3) as worker:
        # a step that runs throughout: nothing below may stop it
        running_job = uuid.uuid4().hex
        ticks = tmp_path / PARTY / running_job / "tick" / "ticks"
        await bus.publish(
            topics.TASKS,
            task_run(
                running_job,
                "tick",
                "te_tick",
                "guest",
                PARTY,
                tmp_path,
                args={"tick_file": str(ticks)},
            ),
        )
        await collect(bus, topics.STATUS, running_job, lambda es: len(es) >= 1)

        cases = _bad_task_runs(tmp_path)
        stray = Envelope(type="job.stop", job_id=uuid.uuid4().hex, src=PARTY, body={})
        for env, _ in cases.values():
            await bus.publish(topics.TASKS, env)
        await bus.publish(topics.TASKS, stray)

        for job, (env, words) in cases.items():
            status = final(await collect(bus, topics.STATUS, job, ended()))
            assert status.body["state"] == "failed" and status.task == env.task
            assert words in status.body["reason"], status.body["reason"]
        dead = await dead_letters(kafka, {*cases, stray.job_id})
        for record in dead:
            marks = headers(record)
            assert marks["dead_service"] == "task_engine" and marks["dead_source"] == topics.TASKS
            assert len(marks["dead_reason"]) <= 512
        assert _made_nothing_outside(tmp_path)

        # the worker goes on: the long step still runs, a good task runs, offsets moved on
        assert [s["job_id"] for s in worker.running] == [running_job]
        good = uuid.uuid4().hex
        await bus.publish(topics.TASKS, task_run(good, "fail", "te_fail", "guest", PARTY, tmp_path))
        assert (
            "no id column" in final(await collect(bus, topics.STATUS, good, ended())).body["reason"]
        )
        assert await committed_at_end(kafka, worker.group_id)
        assert worker.metrics.dead._value.get() >= len(cases) + 1

        await bus.publish(
            topics.CONTROL,
            Envelope(
                type="job.stop", job_id=running_job, src=PARTY, dst=PARTY, body={"reason": "done"}
            ),
        )
        assert (
            final(await collect(bus, topics.STATUS, running_job, ended())).body["state"]
            == "canceled"
        )


async def test_bad_control_commands_are_set_aside(kafka: Broker, bus: Bus, tmp_path: Path) -> None:
    async with running_worker(kafka, PARTY, tmp_path) as worker:
        await asyncio.sleep(0.5)  # fl.control is read from the worker's start on
        bad = {
            uuid.uuid4().hex: {"type": "job.stop", "body": {"attempt": "all"}},
            uuid.uuid4().hex: {"type": "job.stop", "body": {"reason": b"\x00" * 10}},
            uuid.uuid4().hex: {"type": "job.explode", "body": {}},
        }
        for job, fields in bad.items():
            await bus.publish(topics.CONTROL, Envelope(job_id=job, src=PARTY, dst=PARTY, **fields))
        dead = await dead_letters(kafka, set(bad))
        assert {headers(r)["dead_source"] for r in dead} == {topics.CONTROL}
        port = worker.settings.task_engine_port
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200


async def test_records_that_are_no_envelope_are_set_aside_from_every_topic(
    kafka: Broker, bus: Bus, tmp_path: Path
) -> None:
    """Undecodable bytes and a chunk header over the bounds, on fl.tasks, on fl.control and on
    fl.in.fed while a step reads it, reach fl.dead with the topic they came from; they are
    counted, and the worker and its step go on."""
    job = uuid.uuid4().hex
    parties = {"guest": [PEER], "host": [PARTY]}
    async with running_worker(kafka, PARTY, tmp_path) as worker:
        await asyncio.sleep(0.5)  # fl.control is read from the worker's start on
        await bus.publish(
            topics.TASKS, task_run(job, "ping", "te_ping", "host", PARTY, tmp_path, parties=parties)
        )
        await collect(bus, topics.STATUS, job, lambda es: len(es) >= 1)
        sent = {t: await publish_unreadable(bus, t) for t in (topics.TASKS, topics.CONTROL)}
        sent[topics.IN_FED] = await publish_unreadable(bus, topics.IN_FED)
        dead = await dead_letters(kafka, set().union(*sent.values()))
        for topic, keys in sent.items():
            for record in (r for r in dead if r.key.decode() in keys):
                marks = headers(record)
                assert marks["dead_service"] == "task_engine"
                assert marks["dead_source"].startswith(f"{topic}["), marks["dead_source"]
        reasons = " ".join(headers(r)["dead_reason"] for r in dead)
        assert "1000000" in reasons
        assert worker.metrics.dead._value.get() >= 6
        ping = Envelope(
            type="fed",
            job_id=job,
            task="ping",
            src=PEER,
            dst=PARTY,
            body={"attempt": 1, "tag": "ping", "value": np.arange(3)},
        )
        await bus.publish(topics.IN_FED, ping)
        done = final(await collect(bus, topics.STATUS, job, ended()))
        assert done.body["state"] == "success", done.body["reason"]
        # the commit moves past what was set aside with the next task handed out
        good = uuid.uuid4().hex
        await bus.publish(topics.TASKS, task_run(good, "fail", "te_fail", "guest", PARTY, tmp_path))
        await collect(bus, topics.STATUS, good, ended())
        assert await committed_at_end(kafka, worker.group_id)


async def test_a_step_gets_only_well_formed_fed_messages_from_its_peers(
    kafka: Broker, bus: Bus, tmp_path: Path
) -> None:
    """The host side of te_ping waits for the guest's ``ping``; malformed messages for it and one
    from a party not in the step are set aside, and the real one still gets through."""
    job = uuid.uuid4().hex
    parties = {"guest": [PEER], "host": [PARTY]}
    async with running_worker(kafka, PARTY, tmp_path):
        await bus.publish(
            topics.TASKS, task_run(job, "ping", "te_ping", "host", PARTY, tmp_path, parties=parties)
        )
        await collect(bus, topics.STATUS, job, lambda es: len(es) >= 1)

        def fed(src: str, body: dict[str, Any]) -> Envelope:
            return Envelope(type="fed", job_id=job, task="ping", src=src, dst=PARTY, body=body)

        bad = [
            fed(PEER, {"attempt": 1, "value": 1}),
            fed(PEER, {"attempt": 1, "tag": ["ping"], "value": 1}),
            fed(PEER, {"attempt": 1, "tag": "ping", "value": 1, "smuggled": True}),
            fed("99999", {"attempt": 1, "tag": "ping", "value": [9, 9, 9]}),
        ]
        for env in bad:
            await bus.publish(topics.IN_FED, env)
        await bus.publish(
            topics.IN_FED, fed(PEER, {"attempt": 1, "tag": "ping", "value": np.arange(3)})
        )
        done = final(await collect(bus, topics.STATUS, job, ended()))
        assert done.body["state"] == "success", done.body["reason"]
    consumer = AIOKafkaConsumer(
        topics.DEAD, bootstrap_servers=kafka.bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got = await consumer.getmany(timeout_ms=5000)
        ids = {
            Envelope.from_bytes(r.value).id
            for records in got.values()
            for r in records
            if r.key == job.encode()
        }
    finally:
        await consumer.stop()
    assert ids == {env.id for env in bad}


async def test_a_kubernetes_error_fails_the_task_not_the_worker(
    kafka: Broker, bus: Bus, tmp_path: Path
) -> None:
    config = KubernetesConfig(
        namespace="tessera-81000",
        image="tessera/runtime:0.1.0",
        claim="party-state",
        volume_root=tmp_path,
        worker_pod=WorkerPod("task-engine-0", "uid-0"),
    )
    # the worker's Role lacks a permission: the API server refuses every call
    server = FakeApiServer(
        config.namespace, forbidden='jobs.batch is forbidden: cannot list resource "jobs"'
    )
    async with (
        server.serving(),
        running_worker(
            kafka, PARTY, tmp_path, runtime=KubernetesRuntime(config, server.api())
        ) as worker,
    ):
        jobs = [uuid.uuid4().hex for _ in range(2)]
        for job in jobs:
            await bus.publish(
                topics.TASKS, task_run(job, "train", "te_fail", "guest", PARTY, tmp_path)
            )
        for job in jobs:
            status = final(await collect(bus, topics.STATUS, job, ended()))
            assert status.body["state"] == "failed"
            assert status.body["reason"].startswith("could not start the step: GET /apis/batch/v1")
            assert "403" in status.body["reason"]
        assert isinstance(worker, Worker) and worker.running == []
        assert await committed_at_end(kafka, worker.group_id)
