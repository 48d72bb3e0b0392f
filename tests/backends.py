"""Fresh, empty databases on SQLite or on the session's throwaway PostgreSQL, for the services
that keep tables (flow_server, dashboard); the fixtures are in conftest.py."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Protocol

import psycopg


class _Server(Protocol):
    def url(self, database: str = "postgres") -> str: ...


class Databases:
    """Fresh, empty databases on one backend; the PostgreSQL ones are dropped by ``drop_all``."""

    def __init__(self, backend: str, tmp: Path, server: _Server | None) -> None:
        self.backend = backend
        self._tmp = tmp
        self._server = server
        self._created: list[str] = []

    def new(self, name: str) -> str:
        """The URL of a new, empty database (``name`` only makes it easier to recognise)."""
        if self._server is None:
            return f"sqlite:///{self._tmp / f'{name}-{uuid.uuid4().hex[:8]}.db'}"
        database = f"t_{name}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._server.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
        self._created.append(database)
        return self._server.url(database)

    def drop_all(self) -> None:
        if self._server is None or not self._created:
            return
        with psycopg.connect(self._server.url(), autocommit=True) as conn:
            for database in self._created:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        self._created.clear()
