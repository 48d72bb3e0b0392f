"""Schemathesis against the dashboard's own OpenAPI, served by uvicorn: no request gets a 5xx.

Bounded: :data:`EXAMPLES` generated requests per operation (a few hundred in all), against a
dashboard holding a finished sample job and a job whose body is hostile. ``/api/events`` is left
out: it streams until the server stops.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from dashboard_helpers import job_status, sample_job
from hypothesis import HealthCheck, settings

from brokers import free_port
from dashboard.app import create_app
from dashboard.consumer import MemorySource
from dashboard.server import Server
from fedcore.settings import PartySettings

EXAMPLES = 25
PORT = free_port()
# the dashboard's SQLite in a directory of its own (the module's app is built at import)
STATE = Path(tempfile.mkdtemp(prefix="tessera-dashboard-schema-"))
SETTINGS = PartySettings(
    party_id="10000", kafka_bootstrap="127.0.0.1:1", dashboard_port=PORT, state_dir=STATE
)
SOURCE = MemorySource(
    [
        *sample_job("d" * 32, 1_700_000_000.0),
        job_status("e" * 32, "failed", 1_700_000_100.0, reason="<b>host</b> failed"),
    ]
)
APP = create_app(SETTINGS, source=SOURCE)
SCHEMA = schemathesis.openapi.from_dict(APP.openapi()).exclude(path="/api/events")


@pytest.fixture(scope="module")
def dashboard_url() -> Iterator[str]:
    """The app under uvicorn in a thread of its own (schemathesis calls are synchronous)."""
    server = Server(APP, host="127.0.0.1", port=PORT, log_level="warning")
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the dashboard did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{PORT}"
    finally:
        server.should_exit = True
        thread.join(15)
        shutil.rmtree(STATE, ignore_errors=True)


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_request_gets_a_server_error(case: Any, dashboard_url: str) -> None:
    response = case.call(base_url=dashboard_url, timeout=30)
    assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
