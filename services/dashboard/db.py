"""The dashboard's database: an engine from ``PartySettings.dashboard_db_url`` (SQLite in
``STATE_DIR`` by default, PostgreSQL by URL) and its own Alembic history, kept apart from the
flow_server's in the ``dashboard_alembic_version`` table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic.config import Config
from sqlalchemy import Engine

from fedcore import dburl

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE: Final = "dashboard_alembic_version"


def alembic_config(engine: Engine | None = None) -> Config:
    return dburl.alembic_config(MIGRATIONS_DIR, engine)


def upgrade_to_head(engine: Engine) -> None:
    """Bring the dashboard's tables to the newest migration (the only way they are created)."""
    dburl.upgrade_to_head(MIGRATIONS_DIR, engine)
