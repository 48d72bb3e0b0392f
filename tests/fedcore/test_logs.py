"""Structured logs: the formats, the bound job/step/attempt fields, and a real service with
LOG_FORMAT=json writing one JSON object per line."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from brokers import Broker, free_port
from fedcore import logs, topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope

ROOT = Path(__file__).resolve().parents[2]


def _record(message: str, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord("t.logger", logging.WARNING, __file__, 1, message, (), info)
    logs._Context("flow_server", "10000").filter(record)
    return record


def test_json_lines_carry_the_party_service_and_bound_fields() -> None:
    with logs.bind(job_id="ab" * 16, step="train"), logs.bind(attempt=2, step=None):
        record = _record("two\nlines")
    entry = json.loads(logs.JsonFormatter().format(record))
    assert entry["party"] == "10000" and entry["service"] == "flow_server"
    assert (entry["job_id"], entry["step"], entry["attempt"]) == ("ab" * 16, "train", 2)
    assert entry["message"] == "two\nlines" and entry["level"] == "warning"
    outside = json.loads(logs.JsonFormatter().format(_record("x", exc=True)))
    assert "job_id" not in outside and "ValueError: boom" in outside["exc"]


def test_text_lines_tag_the_bound_fields_before_a_traceback() -> None:
    with logs.bind(job_id="j1", step="train", attempt=1):
        text = logs.TextFormatter().format(_record("failed", exc=True))
    first, _, rest = text.partition("\n")
    assert first.endswith("t.logger: failed [job=j1 step=train attempt=1]")
    assert "ValueError: boom" in rest
    assert "[" not in logs.TextFormatter().format(_record("plain")).split(": ", 1)[1]


async def test_tasks_started_inside_a_binding_keep_it() -> None:
    seen: list[Any] = []

    async def later() -> None:
        await asyncio.sleep(0)
        seen.append(_record("x").bound)  # type: ignore[attr-defined]

    with logs.bind_envelope(
        Envelope(type="task.run", job_id="c2" * 16, task="scale", src="1", body={"attempt": True})
    ):
        task = asyncio.create_task(later())
    await task
    assert dict(seen[0]) == {"job_id": "c2" * 16, "step": "scale"}  # a bool is no attempt


async def _publish(bootstrap: str, env: Envelope) -> None:
    async with Bus(bootstrap, "t") as bus:
        await bus.publish(topics.IN_CTL, env)


def _wait_until(check: Any, deadline: float, log_path: Path) -> None:
    while not check():
        assert time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.3)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.kafka
def test_a_service_logs_json_with_the_job_it_handles(kafka: Broker, tmp_path: Path) -> None:
    party = "30100"  # its own consumer group on the shared broker
    port = free_port()
    env_file = tmp_path / "party.env"
    env_file.write_text(
        f"PARTY_ID={party}\nKAFKA_BOOTSTRAP={kafka.bootstrap}\nFLOW_SERVER_PORT={port}\n"
        f"STATE_DIR={tmp_path / 'state'}\nLOG_FORMAT=json\n"
    )
    log_path = tmp_path / "flow_server.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flow_server", "--env-file", str(env_file)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    job_id = uuid.uuid4().hex
    try:
        deadline = time.monotonic() + 120
        health = f"http://127.0.0.1:{port}/flow-server/health"
        _wait_until(lambda: proc.poll() is None and _healthy(health), deadline, log_path)
        # a start for a job it never heard of: logged, about that job
        start = Envelope(type="job.start", job_id=job_id, src="20000", dst=party)
        asyncio.run(_publish(kafka.bootstrap, start))
        _wait_until(lambda: job_id in log_path.read_text(), deadline, log_path)
    finally:
        proc.terminate()
        proc.wait(30)
    entries = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert entries and all(e["party"] == party and e["service"] == "flow_server" for e in entries)
    about = [e for e in entries if e.get("job_id") == job_id]
    assert about and job_id in about[0]["message"]
