"""A worker's heartbeats on a real broker: every interval it lists the steps it runs now."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from test_task_worker import GUEST, collect, ended, running_worker, task_run

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope
from task_engine.worker import HEARTBEAT

pytestmark = pytest.mark.kafka


async def heartbeats_until(
    bus: Bus, worker_id: str, until: Callable[[Envelope], bool], timeout_s: float = 30.0
) -> list[Envelope]:
    """The worker's heartbeats on fl.status, read from the beginning, up to one that ``until``
    accepts."""
    got: list[Envelope] = []

    async def gather() -> None:
        async with bus.subscribe([topics.STATUS], group_id=f"test-beats-{uuid.uuid4().hex}") as sub:
            async for env in sub:
                if env.type == HEARTBEAT and env.body.get("worker") == worker_id:
                    got.append(env)
                    if until(env):
                        return

    await asyncio.wait_for(gather(), timeout_s)
    return got


def lists(job: str) -> Callable[[Envelope], bool]:
    return lambda env: any(s["job_id"] == job for s in env.body["running"])


async def test_heartbeats_list_the_running_steps_until_they_end(
    kafka: Broker, tmp_path: Path
) -> None:
    job = uuid.uuid4().hex
    async with (
        running_worker(kafka, GUEST, tmp_path, heartbeat_interval_s=0.2) as worker,
        Bus(kafka.bootstrap, "test-heartbeat") as bus,
    ):
        assert worker.worker_id.count(":") == 2  # host:pid:start
        ticks = tmp_path / "ticks"
        run = task_run(
            job, "tick", "te_tick", "guest", GUEST, tmp_path, args={"tick_file": str(ticks)}
        )
        run.body["attempt"] = 3
        await bus.publish(topics.TASKS, run)
        beats = await heartbeats_until(bus, worker.worker_id, lists(job))
        beat = beats[-1]
        assert beat.src == GUEST and beat.job_id == ""
        assert beat.body["party"] == GUEST and beat.body["interval_s"] == 0.2
        assert [s for s in beat.body["running"] if s["job_id"] == job] == [
            {"job_id": job, "task": "tick", "attempt": 3}
        ]
        stop = Envelope(type="job.stop", job_id=job, src=GUEST, dst=GUEST, body={})
        await bus.publish(topics.CONTROL, stop)
        await collect(bus, topics.STATUS, job, ended())
        # after the step ended, the next heartbeats no longer list it
        seen_listed = False

        def ended_listing(env: Envelope) -> bool:
            nonlocal seen_listed
            if lists(job)(env):
                seen_listed = True
                return False
            return seen_listed

        await heartbeats_until(bus, worker.worker_id, ended_listing)
