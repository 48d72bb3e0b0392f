"""The authenticated dashboard, on SQLite and PostgreSQL: off loopback it lets in only holders of
the party's API tokens (from the flow_server's own token table), by bearer token or by the
session cookie of its login page; and on loopback it answers only its own address (Host)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dashboard_helpers import JOB, sample_job, serving
from sqlalchemy import delete

from dashboard.app import create_app
from dashboard.auth import SESSION_COOKIE, Sessions, safe_next
from dashboard.consumer import MemorySource
from fedcore.dburl import normalize_url
from fedcore.settings import PartySettings
from flow_server import auth
from flow_server.db import make_engine, make_sessionmaker, upgrade_to_head
from flow_server.models import ApiToken


@pytest.fixture(params=["sqlite", "postgresql"])
def token_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A flow_server database at head with one API token: (its URL, the token)."""
    if request.param == "sqlite":
        url, server, name = f"sqlite:///{tmp_path / 'flow_server.db'}", None, ""
    else:
        server = request.getfixturevalue("postgres")
        name = f"t_dash_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = server.url(name)
    engine = make_engine(url)
    upgrade_to_head(engine)
    with make_sessionmaker(engine).begin() as session:
        token = auth.create_token(session, name="dashboard test").token
    engine.dispose()
    try:
        yield url, token
    finally:
        if server is not None:
            with psycopg.connect(server.url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _public(url: str, state_dir: Path, **extra: Any) -> PartySettings:
    return PartySettings(
        party_id="10000",
        kafka_bootstrap="127.0.0.1:1",
        bind_host="0.0.0.0",
        database_url=url,
        state_dir=state_dir,
        **extra,
    )


async def test_off_loopback_only_token_holders_get_in(
    token_db: tuple[str, str], tmp_path: Path
) -> None:
    url, token = token_db
    app = create_app(_public(url, tmp_path), source=MemorySource(sample_job(JOB, 1.0)))
    async with serving(app) as client:
        # open: health, metrics, the login page
        assert (await client.get("/health")).status_code in (200, 503)
        assert (await client.get("/metrics")).status_code == 200
        assert "API token" in (await client.get("/login")).text

        # the API: 401 without or with a wrong token, 200 with a good one
        refused = await client.get("/api/jobs")
        assert refused.status_code == 401 and "requires an API token" in refused.json()["detail"]
        wrong = await client.get("/api/jobs", headers={"Authorization": "Bearer tsr_wrong"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "the API token is not valid"
        good = await client.get("/api/jobs", headers={"Authorization": f"Bearer {token}"})
        assert good.status_code == 200

        # the pages: to the login page, then back where one was going
        page = await client.get(f"/jobs/{JOB}?threshold=0.5")
        assert page.status_code == 303
        assert page.headers["location"] == f"/login?next=/jobs/{JOB}%3Fthreshold%3D0.5"
        bad = await client.post("/login", data={"token": "tsr_guess", "next": f"/jobs/{JOB}"})
        assert bad.status_code == 401 and "not a valid API token" in bad.text
        assert SESSION_COOKIE not in bad.cookies
        ok = await client.post("/login", data={"token": token, "next": f"/jobs/{JOB}"})
        assert ok.status_code == 303 and ok.headers["location"] == f"/jobs/{JOB}"
        set_cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in set_cookie and "samesite=strict" in set_cookie
        assert token not in ok.headers["set-cookie"]  # the cookie holds no token
        assert (await client.get(f"/jobs/{JOB}")).status_code == 200  # the client keeps the cookie
        assert (await client.get("/api/jobs")).status_code == 200

        # a forged cookie is no session; logging out ends this one
        session = client.cookies[SESSION_COOKIE]
        forged = session[:-1] + ("0" if session[-1] != "0" else "1")
        client.cookies.set(SESSION_COOKIE, forged)
        assert (await client.get("/api/jobs")).status_code == 401
        client.cookies.set(SESSION_COOKIE, session)
        out = await client.post("/logout")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert 'tessera_session="";' in out.headers["set-cookie"]
        assert "max-age=0" in out.headers["set-cookie"].lower()


async def test_a_session_ends_with_its_time_or_its_token(token_db: tuple[str, str]) -> None:
    url, token = token_db
    now = [1_000_000.0]
    engine = make_engine(url)
    sessions = Sessions(engine, lifetime_s=60, clock=lambda: now[0])
    try:
        assert await sessions.token_valid(token)
        assert not await sessions.token_valid(token + "x")
        assert not await sessions.token_valid("x" * 10_000)
        cookie = sessions.issue(token)
        assert await sessions.session_valid(cookie)
        assert not await sessions.session_valid(cookie.replace(".", ".0", 1))
        assert not await Sessions(engine).session_valid(cookie)  # another start, another key
        now[0] += 61
        assert not await sessions.session_valid(cookie)
        now[0] -= 61
        with make_sessionmaker(engine).begin() as session:
            session.execute(delete(ApiToken))
        assert not await sessions.session_valid(cookie)
    finally:
        engine.dispose()


def test_after_login_only_a_path_here() -> None:
    assert safe_next("/jobs/x?threshold=0.5") == "/jobs/x?threshold=0.5"
    for elsewhere in (None, "", "https://evil.example/", "//evil.example/", "/\\evil.example"):
        assert safe_next(elsewhere) == "/"


async def test_on_loopback_it_is_open_but_answers_only_its_own_address(tmp_path: Path) -> None:
    settings = PartySettings(
        party_id="10000", kafka_bootstrap="127.0.0.1:1", domain="party.example", state_dir=tmp_path
    )
    async with serving(create_app(settings, source=MemorySource())) as client:
        assert (await client.get("/api/jobs")).status_code == 200
        port = client.base_url.port
        for host in (f"localhost:{port}", "party.example", f"party.example:{port}"):
            assert (await client.get("/api/jobs", headers={"Host": host})).status_code == 200
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}", ""):
            rebound = await client.get("/", headers={"Host": host})
            assert rebound.status_code == 400, host
            assert rebound.json()["code"] == "host_not_allowed"


def test_the_url_drivers() -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"


async def test_the_token_table_is_the_flow_servers(tmp_path: Path) -> None:
    """REQUIRE_API_TOKEN=1 on loopback, and no DATABASE_URL: the flow_server's SQLite in
    STATE_DIR, where `tessera token create` writes."""
    settings = PartySettings(
        party_id="10000", kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path, require_api_token=True
    )
    engine = make_engine(settings.db_url)
    upgrade_to_head(engine)
    with make_sessionmaker(engine).begin() as session:
        token = auth.create_token(session, name="t").token
    engine.dispose()
    async with serving(create_app(settings, source=MemorySource())) as client:
        assert (await client.get("/api/jobs")).status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        assert (await client.get("/api/jobs", headers=headers)).status_code == 200
