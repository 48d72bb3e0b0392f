"""The worker's ``GET /metrics`` on a real broker: tasks consumed, records produced, running steps
and step durations by component and outcome."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_task_worker import GUEST, collect, ended, running_worker, task_run

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope
from task_engine.worker import Worker

pytestmark = pytest.mark.kafka


async def scrape(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{worker.settings.task_engine_port}/metrics"
    async with httpx.AsyncClient() as client:
        response = await client.get(url, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_metrics_count_tasks_records_running_steps_and_durations(
    kafka: Broker, tmp_path: Path
) -> None:
    job = uuid.uuid4().hex
    async with (
        running_worker(kafka, GUEST, tmp_path, heartbeat_interval_s=0.2) as worker,
        Bus(kafka.bootstrap, "test-metrics") as bus,
    ):
        run = task_run(
            job, "tick", "te_tick", "guest", GUEST, tmp_path, args={"tick_file": "ticks"}
        )
        await bus.publish(topics.TASKS, run)
        await collect(bus, topics.STATUS, job, lambda es: len(es) >= 1)  # running
        during = await scrape(worker)
        assert during[("tessera_task_engine_running_steps", ())] == 1
        assert during[("tessera_task_engine_tasks_total", (("outcome", "started"),))] == 1
        assert during[("tessera_task_engine_records_consumed_total", (("topic", "fl.tasks"),))] >= 1
        await bus.publish(
            topics.CONTROL, Envelope(type="job.stop", job_id=job, src=GUEST, dst=GUEST, body={})
        )
        await collect(bus, topics.STATUS, job, ended())
        for _ in range(50):  # the duration is observed right after the final status
            after = await scrape(worker)
            if after[("tessera_task_engine_running_steps", ())] == 0:
                break
            await asyncio.sleep(0.1)
        labels = (("component", "te_tick"), ("outcome", "canceled"))
        assert after[("tessera_task_engine_step_duration_seconds_count", labels)] == 1
        assert after[("tessera_task_engine_step_duration_seconds_sum", labels)] > 0
        assert after[("tessera_task_engine_running_steps", ())] == 0
        produced = ("tessera_task_engine_records_produced_total", (("topic", "fl.status"),))
        assert after[produced] >= 3  # running, canceled, heartbeats
        assert after[("tessera_task_engine_heartbeats_sent_total", ())] >= 1
