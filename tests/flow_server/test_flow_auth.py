"""API tokens on SQLite and PostgreSQL with the real Kafka broker: required off loopback and with
``REQUIRE_API_TOKEN=1`` (401 JSON without or with a wrong token, 200 with a good one, ``/health``
always open), not required on 127.0.0.1; only the token's hash is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from flow_helpers import CATALOG, Databases
from sqlalchemy import select

from fedcore.settings import PartySettings
from flow_server import auth
from flow_server.app import create_app
from flow_server.models import ApiToken

pytestmark = pytest.mark.kafka

BASE = "http://127.0.0.1:9380/flow-server"  # the Host a loopback flow_server answers
SETUP_TOKEN = "tsr_generated-by-the-installer-0123456789"
PROTECTED = ["/jobs", "/pipelines", "/data", "/models", "/jobs/x", "/data/x", "/models/x/export"]


@pytest.fixture(scope="module")
async def apps(
    kafka: Any, module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, tuple[httpx.AsyncClient, Any]]]:
    root = tmp_path_factory.mktemp("flow_auth")
    clients: dict[str, tuple[httpx.AsyncClient, Any]] = {}
    settings = {
        "public": PartySettings(
            party_id="10000",
            kafka_bootstrap=kafka.bootstrap,
            bind_host="0.0.0.0",
            state_dir=root / "public",
            database_url=module_databases.new("public"),
        ),
        "installed": PartySettings(
            party_id="10000",
            kafka_bootstrap=kafka.bootstrap,
            bind_host="0.0.0.0",
            state_dir=root / "installed",
            database_url=module_databases.new("installed"),
            setup_api_token=SETUP_TOKEN,
        ),
        "local": PartySettings(
            party_id="10000",
            kafka_bootstrap=kafka.bootstrap,
            state_dir=root / "local",
            database_url=module_databases.new("local"),
        ),
    }
    app_public = create_app(settings["public"], catalog=CATALOG)
    app_installed = create_app(settings["installed"], catalog=CATALOG)
    app_local = create_app(settings["local"], catalog=CATALOG)
    async with (
        app_public.router.lifespan_context(app_public),
        app_installed.router.lifespan_context(app_installed),
        app_local.router.lifespan_context(app_local),
    ):
        for name, app in (
            ("public", app_public),
            ("installed", app_installed),
            ("local", app_local),
        ):
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
            clients[name] = (client, app.state.flow_server)
        yield clients
        for client, _ in clients.values():
            await client.aclose()


def test_when_a_token_is_required() -> None:
    def settings(**env: str) -> PartySettings:
        return PartySettings.from_env(environ={"PARTY_ID": "1", **env})

    assert not auth.token_required(settings())
    assert not auth.token_required(settings(BIND_HOST="localhost"))
    assert not auth.token_required(settings(BIND_HOST="::1"))
    assert auth.token_required(settings(BIND_HOST="0.0.0.0"))
    assert auth.token_required(settings(BIND_HOST="10.1.2.3"))
    assert auth.token_required(settings(BIND_HOST="flow.example.org"))
    assert auth.token_required(settings(REQUIRE_API_TOKEN="1"))
    assert auth.token_required(settings(REQUIRE_API_TOKEN="true"))


async def test_off_loopback_a_token_is_required(apps: Any) -> None:
    client, server = apps["public"]
    with server.sessions.begin() as s:
        new = auth.create_token(s, name="ci")
    for path in PROTECTED:
        r = await client.get(path)
        assert r.status_code == 401, path
        assert r.json() == {
            "code": "token_required",
            "message": r.json()["message"],
            "where": "headers.authorization",
        }
        r = await client.get(path, headers={"Authorization": "Bearer tsr_wrong"})
        assert r.status_code == 401 and r.json()["code"] == "invalid_token"
    r = await client.post("/data", content=b"id\n1\n", headers={"content-type": "text/csv"})
    assert r.status_code == 401  # refused before the body is read
    r = await client.get("/health")
    assert r.status_code == 200
    good = {"Authorization": f"Bearer {new.token}"}
    assert (await client.get("/jobs", headers=good)).status_code == 200
    assert (await client.get("/data", headers=good)).status_code == 200
    r = await client.post("/data", content=b"id\n1\n", headers={**good, "content-type": "text/csv"})
    assert r.status_code == 201, r.text
    r = await client.get("/jobs", headers={"Authorization": f"Basic {new.token}"})
    assert r.status_code == 401


async def test_only_the_hash_is_stored(apps: Any) -> None:
    _, server = apps["public"]
    with server.sessions.begin() as s:
        new = auth.create_token(s, name="hash")
    with server.sessions() as s:
        row = s.scalars(select(ApiToken).where(ApiToken.id == new.token_id)).one()
        assert row.token_hash == auth.hash_token(new.token) != new.token
        assert new.token not in {row.token_hash, row.prefix, row.name}
        assert auth.check_token(s, new.token) is not None
        assert auth.check_token(s, new.token + "x") is None


async def test_on_loopback_no_token_is_needed(apps: Any) -> None:
    client, _ = apps["local"]
    for path in ("/jobs", "/data", "/models", "/pipelines"):
        assert (await client.get(path)).status_code == 200, path


async def test_openapi_documents_errors_and_the_bearer_scheme(apps: Any) -> None:
    client, _ = apps["local"]
    doc = (await client.get("/openapi.json")).json()
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            success = [c for c in responses if c.startswith("2")]
            assert success, f"{method} {path}"
            if not path.endswith("/health"):
                assert {"401", "422"} <= set(responses), f"{method} {path}"
                assert responses["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorOut"
                }
    data_body = doc["paths"]["/flow-server/data"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "text/csv", "application/json"} <= set(data_body)


async def test_the_installers_token_is_accepted_and_stored_hashed(apps: Any) -> None:
    client, server = apps["installed"]
    assert (await client.get("/jobs")).status_code == 401
    good = {"Authorization": f"Bearer {SETUP_TOKEN}"}
    assert (await client.get("/jobs", headers=good)).status_code == 200
    with server.sessions() as s:
        rows = s.scalars(select(ApiToken)).all()
    assert [(r.name, r.token_hash) for r in rows] == [("setup", auth.hash_token(SETUP_TOKEN))]
