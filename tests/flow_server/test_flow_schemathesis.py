"""Schemathesis against the flow_server's own OpenAPI document, on the running service (real
Kafka, SQLite and PostgreSQL): whatever a client sends to any route, the answer is never a 5xx.
Bounded to a few hundred cases per backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from flow_helpers import CATALOG, Databases
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from brokers import Broker, free_port
from fedcore.settings import PartySettings
from flow_server.app import create_app

pytestmark = pytest.mark.kafka

# the document only: nothing is opened until an app's lifespan starts
schema = schemathesis.openapi.from_dict(
    create_app(
        PartySettings(party_id="10000", kafka_bootstrap="127.0.0.1:1"), catalog=CATALOG
    ).openapi()
)


@pytest.fixture(scope="module")
def base_url(
    kafka: Broker, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The flow_server under uvicorn in a thread of its own (Schemathesis calls it blocking)."""
    root = tmp_path_factory.mktemp("flow_schemathesis")
    app = create_app(
        PartySettings(
            party_id="10000",
            kafka_bootstrap=kafka.bootstrap,
            peers={"20000": "http://127.0.0.1:9"},
            state_dir=root / "state",
            database_url=module_databases.new("st"),
        ),
        catalog=CATALOG,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="flow_server under test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the flow_server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_no_request_is_a_server_error(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=[not_a_server_error], timeout=30)
