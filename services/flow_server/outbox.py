"""Publishing the outbox: envelopes written by committed transactions go to Kafka, in order."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from fedcore.bus import Bus
from fedcore.envelope import Envelope
from flow_server.models import OutboxRecord

log = logging.getLogger(__name__)


class OutboxPublisher:
    """Publishes pending outbox rows and deletes each batch once the broker has it.

    A crash between publishing and deleting publishes those envelopes again with the same ids;
    their consumers de-duplicate by id.
    """

    def __init__(self, sessions: sessionmaker[Session], bus: Bus, *, batch: int = 200) -> None:
        self._sessions = sessions
        self._bus = bus
        self._batch = batch
        self._lock = asyncio.Lock()

    def _pending(self) -> list[tuple[int, str, bytes]]:
        with self._sessions() as session:
            rows = session.execute(
                select(OutboxRecord.id, OutboxRecord.topic, OutboxRecord.payload)
                .order_by(OutboxRecord.id)
                .limit(self._batch)
            )
            return [(r.id, r.topic, r.payload) for r in rows]

    def _delete(self, ids: list[int]) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(OutboxRecord).where(OutboxRecord.id.in_(ids)))

    async def flush(self) -> int:
        """Publish everything pending; returns how many envelopes went out."""
        sent = 0
        async with self._lock:
            while rows := await asyncio.to_thread(self._pending):
                done: list[int] = []
                try:
                    for row_id, topic, payload in rows:
                        await self._bus.publish(topic, Envelope.from_bytes(payload))
                        done.append(row_id)
                finally:
                    if done:
                        await asyncio.to_thread(self._delete, done)
                sent += len(done)
        return sent
