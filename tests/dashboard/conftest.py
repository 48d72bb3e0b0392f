"""Fixtures of the dashboard tests: its database on each backend, migrated, behind a Store; a
party's settings whose dashboard database is a fresh SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import Databases
from dashboard.db import upgrade_to_head
from dashboard.store import Store
from fedcore.dburl import make_engine
from fedcore.settings import PartySettings


@pytest.fixture
def dashboard_db(databases: Databases) -> str:
    """A fresh database for the dashboard, on each backend in turn (not migrated yet)."""
    return databases.new("dashboard")


@pytest.fixture
def store(dashboard_db: str) -> Iterator[Store]:
    engine = make_engine(dashboard_db)
    try:
        upgrade_to_head(engine)
        yield Store(engine)
    finally:
        engine.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> PartySettings:
    """Party 10000 with its state (the dashboard's SQLite) in the test's own directory; its Kafka
    is never dialled by the tests that feed the app from a MemorySource."""
    return PartySettings(party_id="10000", kafka_bootstrap="127.0.0.1:1", state_dir=tmp_path)
