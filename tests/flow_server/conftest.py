"""Fixtures of the flow_server tests, among them a fresh database on SQLite and on PostgreSQL.

Every test that touches the database takes ``databases`` (tests/conftest.py) or ``database_url``
and so runs once per backend; the PostgreSQL cluster starts on the first test that needs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flow_helpers import CATALOG, Databases

from flow_server.catalog import Catalog


@pytest.fixture
def database_url(databases: Databases) -> str:
    """One fresh database, on each backend in turn."""
    return databases.new("flow")


@pytest.fixture
def catalog() -> Catalog:
    return CATALOG


@pytest.fixture
def data_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    guest, host = tmp_path / "guest.csv", tmp_path / "host.csv"
    guest.write_text("id,y,x0\n1,0,0.5\n")
    host.write_text("id,x1\n1,0.2\n")
    return guest, host, tmp_path / "out"
