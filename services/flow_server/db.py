"""The database: engine and sessions from ``PartySettings.db_url``, and migrating it to head.

SQLite by default, PostgreSQL by URL. Sessions are synchronous; async callers run their
transactions with ``asyncio.to_thread`` so the event loop never waits on the database.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fedcore import dburl

# re-exported: the engine is made in fedcore, as the dashboard has a database too
from fedcore.dburl import make_engine as make_engine
from fedcore.dburl import normalize_url as normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None) -> Config:
    return dburl.alembic_config(MIGRATIONS_DIR, engine)


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest migration (the only way tables are created)."""
    dburl.upgrade_to_head(MIGRATIONS_DIR, engine)
