"""Which records this bridge has already produced, so that a re-sent batch is produced once.

A record is known by ``(src, id, chunk)`` (``chunk`` is ``""`` for an unchunked record) and is
remembered for ``retention_s``; the receiver refuses batches older than that. The store is one
SQLite file in the party's state dir, so it survives a restart of the bridge. SQLite calls run in
a worker thread to keep the event loop free while a commit syncs to disk.

Records being produced are noted as *pending* first (:meth:`DedupStore.begin`) and moved to the
seen set once the broker acknowledged them (:meth:`DedupStore.mark`). A process killed between the
two leaves them pending; at the next start :mod:`federation_bridge.recovery` looks for them in
Kafka, so a record that did reach the broker is not produced a second time by the peer's retry.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Self

RecordKey = tuple[str, str, str]  # (src, id, chunk)

_SCHEMA_VERSION = 2  # 2 added the pending table; 1 opens and gains it
_PRUNE_EVERY_S = 600.0
# ``variable_number`` limit of old SQLite builds, divided by the 3 columns of a key
_QUERY_KEYS = 300


class DedupStore:
    """A durable set of record keys with a retention window."""

    def __init__(self, path: Path, *, retention_s: float, fsync: bool = False) -> None:
        self.path = path
        self.fsync = fsync
        self.retention_s = retention_s
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_prune = 0.0

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with self._lock:
                conn.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def seen(self, keys: Iterable[RecordKey]) -> set[RecordKey]:
        """The subset of ``keys`` already produced (within the retention window)."""
        return await asyncio.to_thread(self._seen, list(keys))

    async def mark(self, keys: Iterable[RecordKey]) -> None:
        """Remember ``keys`` as produced (one transaction)."""
        await asyncio.to_thread(self._mark, list(keys), time.time())

    async def claim(self, items: Iterable[tuple[RecordKey, str]]) -> set[RecordKey]:
        """The keys already seen; the others are noted as pending with their topic (one trip to
        the database thread)."""
        return await asyncio.to_thread(self._claim, list(items), time.time())

    def _claim(self, items: list[tuple[RecordKey, str]], now: float) -> set[RecordKey]:
        seen = self._seen([key for key, _ in items])
        rows = [(*key, topic, now) for key, topic in items if key not in seen]
        if rows:
            self._write(
                "INSERT OR REPLACE INTO pending (src, record_id, chunk, topic, since) "
                "VALUES (?,?,?,?,?)",
                rows,
            )
        return seen

    async def forget_pending(self, keys: Iterable[RecordKey]) -> None:
        """Drop pending keys that are known not to have reached the broker."""
        rows = list(keys)
        if rows:
            await asyncio.to_thread(
                self._write,
                "DELETE FROM pending WHERE src = ? AND record_id = ? AND chunk = ?",
                rows,
            )

    async def pending(self) -> list[tuple[RecordKey, str, float]]:
        """Records left pending by a crash: ``(key, topic, since)``."""
        return await asyncio.to_thread(self._pending)

    def _pending(self) -> list[tuple[RecordKey, str, float]]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT src, record_id, chunk, topic, since FROM pending"
            ).fetchall()
        return [((r[0], r[1], r[2]), r[3], r[4]) for r in rows]

    async def prune(self) -> int:
        """Forget keys older than the retention window; returns how many were forgotten."""
        return await asyncio.to_thread(self._prune, time.time())

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("DedupStore.open() has not been awaited")
        return self._conn

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL survives a crash of the process (SIGKILL) but may lose the last commits
        # on a power loss: those records are then produced twice, never lost. FULL syncs every
        # commit (a few ms each) to close that too.
        conn.execute(f"PRAGMA synchronous={'FULL' if self.fsync else 'NORMAL'}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            conn.close()
            raise RuntimeError(f"{self.path}: schema {version}, expected {_SCHEMA_VERSION}")
        # A private cache owned by this process (no other reader), so no migration tool: the
        # schema is versioned with user_version and a new version would start a new file.
        conn.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS seen (
                src TEXT NOT NULL, record_id TEXT NOT NULL, chunk TEXT NOT NULL,
                seen_at REAL NOT NULL,
                PRIMARY KEY (src, record_id, chunk)
            ) WITHOUT ROWID;
            CREATE INDEX IF NOT EXISTS seen_by_time ON seen (seen_at);
            CREATE TABLE IF NOT EXISTS pending (
                src TEXT NOT NULL, record_id TEXT NOT NULL, chunk TEXT NOT NULL,
                topic TEXT NOT NULL, since REAL NOT NULL,
                PRIMARY KEY (src, record_id, chunk)
            ) WITHOUT ROWID;
            PRAGMA user_version = {_SCHEMA_VERSION};
            """
        )
        self._conn = conn
        self._prune(time.time())

    def _seen(self, keys: list[RecordKey]) -> set[RecordKey]:
        found: set[RecordKey] = set()
        cutoff = time.time() - self.retention_s
        with self._lock:
            for i in range(0, len(keys), _QUERY_KEYS):
                part = keys[i : i + _QUERY_KEYS]
                where = " OR ".join(["(src = ? AND record_id = ? AND chunk = ?)"] * len(part))
                args = [v for key in part for v in key]
                rows = self.conn.execute(
                    f"SELECT src, record_id, chunk FROM seen WHERE seen_at >= ? AND ({where})",
                    [cutoff, *args],
                ).fetchall()
                found.update((r[0], r[1], r[2]) for r in rows)
        return found

    def _mark(self, keys: list[RecordKey], now: float) -> None:
        if not keys:
            return
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO seen (src, record_id, chunk, seen_at) VALUES (?,?,?,?)",
                    [(*key, now) for key in keys],
                )
                conn.executemany(
                    "DELETE FROM pending WHERE src = ? AND record_id = ? AND chunk = ?", keys
                )
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        if now - self._last_prune > _PRUNE_EVERY_S:
            self._prune(now)

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN")
            try:
                conn.executemany(sql, rows)
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _prune(self, now: float) -> int:
        with self._lock:
            cur = self.conn.execute("DELETE FROM seen WHERE seen_at < ?", (now - self.retention_s,))
        self._last_prune = now
        return cur.rowcount
