"""Fixtures of the flow_server tests, among them fresh databases on SQLite and on PostgreSQL.

Every test that touches the database takes ``databases`` (or ``database_url``) and so runs once
per backend; the PostgreSQL cluster starts on the first test that needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import CATALOG, Databases

from flow_server.catalog import Catalog

BACKENDS = ("sqlite", "postgresql")


def _databases(request: pytest.FixtureRequest, tmp: Path) -> Iterator[Databases]:
    backend = str(request.param)
    server = request.getfixturevalue("postgres") if backend == "postgresql" else None
    dbs = Databases(backend, tmp, server)
    try:
        yield dbs
    finally:
        dbs.drop_all()


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    yield from _databases(request, tmp_path)


@pytest.fixture
def database_url(databases: Databases) -> str:
    """One fresh database, on each backend in turn."""
    return databases.new("flow")


@pytest.fixture(scope="module", params=BACKENDS)
def module_databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    """``databases`` for module-scoped fixtures: the module's tests run once per backend."""
    yield from _databases(request, tmp_path_factory.mktemp("db"))


@pytest.fixture
def catalog() -> Catalog:
    return CATALOG


@pytest.fixture
def data_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    guest, host = tmp_path / "guest.csv", tmp_path / "host.csv"
    guest.write_text("id,y,x0\n1,0,0.5\n")
    host.write_text("id,x1\n1,0.2\n")
    return guest, host, tmp_path / "out"
