"""Fixtures of the dashboard tests: its database on each backend, migrated, behind a Store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backends import Databases
from dashboard.db import upgrade_to_head
from dashboard.store import Store
from fedcore.dburl import make_engine


@pytest.fixture
def dashboard_url(databases: Databases) -> str:
    """A fresh database for the dashboard, on each backend in turn (not migrated yet)."""
    return databases.new("dashboard")


@pytest.fixture
def store(dashboard_url: str) -> Iterator[Store]:
    engine = make_engine(dashboard_url)
    try:
        upgrade_to_head(engine)
        yield Store(engine)
    finally:
        engine.dispose()
