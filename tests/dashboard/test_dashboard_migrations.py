"""The dashboard's tables are made by its own Alembic migrations alone and match its models, on
SQLite and PostgreSQL; they can be undone and redone; and they share a database with the
flow_server's without either history seeing the other's tables."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from dashboard.db import VERSION_TABLE, alembic_config, upgrade_to_head
from dashboard.models import Base
from fedcore.dburl import make_engine
from flow_server import db as flow_db


def _ours(name: str | None, type_: str, _parent: Any) -> bool:
    return type_ != "table" or (name or "").startswith("dashboard_")


def _context(conn: Any) -> MigrationContext:
    return MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "include_name": _ours}
    )


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(_context(conn), Base.metadata))


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _context(conn).get_current_revision()


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_upgrade_head_matches_the_models_and_is_idempotent(dashboard_db: str) -> None:
    engine = make_engine(dashboard_db)
    try:
        upgrade_to_head(engine)
        assert _diff(engine) == []
        assert _revision(engine) == _head()
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) | {VERSION_TABLE} == tables
        upgrade_to_head(engine)
        assert _revision(engine) == _head()
    finally:
        engine.dispose()


def test_downgrade_and_upgrade_round_trip(dashboard_db: str) -> None:
    engine = make_engine(dashboard_db)
    try:
        upgrade_to_head(engine)
        cfg = alembic_config(engine)
        command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {VERSION_TABLE}
        command.upgrade(cfg, "head")
        assert _diff(engine) == [] and _revision(engine) == _head()
    finally:
        engine.dispose()


def test_one_database_holds_both_services_tables_and_histories(dashboard_db: str) -> None:
    engine = make_engine(dashboard_db)
    try:
        flow_db.upgrade_to_head(engine)
        upgrade_to_head(engine)
        assert _diff(engine) == [] and _revision(engine) == _head()
        with engine.connect() as conn:
            flow_head = ScriptDirectory.from_config(flow_db.alembic_config()).get_current_head()
            assert MigrationContext.configure(conn).get_current_revision() == flow_head
        tables = set(inspect(engine).get_table_names())
        assert {"jobs", "alembic_version", VERSION_TABLE} <= tables
        command.downgrade(alembic_config(engine), "base")  # the flow_server's tables stay
        assert "jobs" in set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_one_linear_history() -> None:
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1
