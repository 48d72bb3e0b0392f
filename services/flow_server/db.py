"""The database: engine and sessions from ``PartySettings.db_url``, and migrating it to head.

SQLite by default, PostgreSQL by URL. Sessions are synchronous; async callers run their
transactions with ``asyncio.to_thread`` so the event loop never waits on the database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

# re-exported: the engine is made in fedcore, as the dashboard has a database too
from fedcore.dburl import make_engine as make_engine
from fedcore.dburl import normalize_url as normalize_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.set_main_option(
            "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
        )
    return cfg


def upgrade_to_head(engine: Engine) -> None:
    """Bring the schema to the newest migration (the only way tables are created)."""
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
