"""Alembic environment of the dashboard's tables: runs on the connection handed in by
``dashboard.db.upgrade_to_head``, records its revision in its own version table and looks only at
``dashboard_`` tables, so it can share a database with the flow_server."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine

from dashboard.db import VERSION_TABLE
from dashboard.models import Base

config = context.config
target_metadata = Base.metadata


def _ours(name: str | None, type_: str, _parent: Any) -> bool:
    return type_ != "table" or (name or "").startswith("dashboard_")


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        include_name=_ours,
        render_as_batch=True,
        **kwargs,
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection or sqlalchemy.url given to the dashboard migrations")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
