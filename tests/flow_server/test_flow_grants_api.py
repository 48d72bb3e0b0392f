"""``/grants``, ``/decisions`` and ``/jobs/{id}/approve|reject`` over HTTP, on SQLite and
PostgreSQL with the real Kafka broker: response models, validation errors and conflicts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, Databases

from fedcore.settings import PartySettings
from flow_server.app import create_app

pytestmark = pytest.mark.kafka

BASE = "http://127.0.0.1:9380/flow-server"  # the Host a loopback flow_server answers


@pytest.fixture(scope="module")
async def env(
    kafka: Any, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    root = tmp_path_factory.mktemp("grants_api")
    (root / "data").mkdir()
    settings = PartySettings(
        party_id="20000",
        kafka_bootstrap=kafka.bootstrap,
        peers={"10000": "http://127.0.0.1:9"},
        state_dir=root / "state",
        database_url=module_databases.new("grants"),
        input_grants={"10000": [root / "data"]},
    )
    app = create_app(settings, catalog=CATALOG)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield client, root


async def test_the_settings_grant_is_listed(env: tuple[httpx.AsyncClient, Path]) -> None:
    client, root = env
    r = await client.get("/grants", params={"peer": "10000", "active": True})
    assert r.status_code == 200, r.text
    paths = [g["path"] for g in r.json()["items"]]
    assert str((root / "data").resolve()) in paths


async def test_create_read_revoke(env: tuple[httpx.AsyncClient, Path]) -> None:
    client, root = env
    csv = root / "data" / "host.csv"
    csv.write_text("id,x\n1,2\n")
    r = await client.post("/data", json={"path": str(csv), "name": "host-api"})
    assert r.status_code == 201, r.text
    r = await client.post(
        "/grants",
        json={"peer": "10000", "table": "host-api", "role": "guest", "components": ["intersect"]},
    )
    assert r.status_code == 201, r.text
    grant = r.json()
    assert grant["table_name"] == "host-api" and grant["path"] is None
    assert (grant["role"], grant["state"], grant["created_by"]) == (
        "guest",
        "active",
        "local operator (no token)",
    )
    r = await client.get(f"/grants/{grant['grant_id']}")
    assert r.status_code == 200 and r.json() == grant
    r = await client.delete(f"/grants/{grant['grant_id']}")
    assert r.status_code == 200 and r.json()["state"] == "revoked"
    assert r.json()["revoked_by"] == "local operator (no token)"
    r = await client.get("/grants", params={"active": True})
    assert grant["grant_id"] not in [g["grant_id"] for g in r.json()["items"]]
    r = await client.post("/grants", json={"peer": "10000", "kind": "output", "path": "/srv/o"})
    assert r.status_code == 201 and r.json()["role"] is None


@pytest.mark.parametrize(
    ("body", "code", "where"),
    [
        ({"peer": "10000", "path": "rel/path"}, "bad_path", "body.path"),
        ({"peer": "30000", "path": "/data"}, "unknown_party", "body.peer"),
        ({"peer": "10000", "table": "nope"}, "table_not_found", "body.table"),
        ({"peer": "10000", "path": "/d", "components": ["x"]}, "unknown_component", None),
        ({"peer": "10000", "path": "/d", "role": "boss"}, "invalid_request", "body.role"),
        ({"peer": "10000", "path": "/d", "colour": "red"}, "invalid_request", "body.colour"),
    ],
)
async def test_a_bad_grant_is_a_422_that_names_the_field(
    env: tuple[httpx.AsyncClient, Path], body: dict[str, Any], code: str, where: str | None
) -> None:
    client, _ = env
    r = await client.post("/grants", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == code
    if where is not None:
        assert r.json()["where"] == where


async def test_unknown_ids_and_undecidable_jobs(env: tuple[httpx.AsyncClient, Path]) -> None:
    client, _ = env
    r = await client.get("/grants/nope")
    assert r.status_code == 404 and r.json()["code"] == "grant_not_found"
    r = await client.post("/jobs/nope/approve")
    assert r.status_code == 404 and r.json()["code"] == "job_not_found"
    r = await client.post("/jobs/nope/reject", json={"reason": "x" * 501})
    assert r.status_code == 422
    for params in ({"decision": "maybe"}, {"job_id": "\x00"}):
        r = await client.get("/decisions", params=params)
        assert r.status_code == 422
    r = await client.get("/decisions")
    assert r.status_code == 200 and r.json()["items"] == []


async def test_the_openapi_documents_the_new_routes(env: tuple[httpx.AsyncClient, Path]) -> None:
    client, _ = env
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in ("/flow-server/grants", "/flow-server/grants/{grant_id}", "/flow-server/decisions"):
        assert path in paths
    approve = paths["/flow-server/jobs/{job_id}/approve"]["post"]
    assert "409" in approve["responses"] and "401" in approve["responses"]
