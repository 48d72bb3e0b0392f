"""The schema is made by the Alembic migrations alone, and it matches the models, on SQLite and
PostgreSQL alike; every migration can be undone and redone."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from flow_server.db import alembic_config, make_engine, normalize_url, upgrade_to_head
from flow_server.models import Base


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), Base.metadata))


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_upgrade_head_matches_the_models(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_to_head(engine)
        assert _diff(engine) == []
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert _revision(engine) == head
        assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
        upgrade_to_head(engine)  # idempotent
        assert _revision(engine) == head
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_round_trip(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_to_head(engine)
        cfg = alembic_config(engine)
        command.downgrade(cfg, "base")
        assert _revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        command.upgrade(cfg, "head")
        assert _diff(engine) == []
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert _revision(engine) == head
    finally:
        engine.dispose()


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


def test_postgres_urls_use_psycopg3() -> None:
    assert normalize_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
