"""Setting aside a consumed message that cannot be applied, so that it never stops a consumer.

Every consumer (flow_server, task_engine, dashboard, bridge) applies each message inside a guard;
what the guard catches goes here: the message is written unchanged to ``fl.dead`` with headers
``dead_reason``, ``dead_service`` and ``dead_source`` (where it was read), counted, and logged as
one line of at most :data:`MAX_LOG_CHARS` characters. The caller then commits past it. A reason
is the caller's own text about a message that may come from another party, so it is cut to
:data:`MAX_REASON_CHARS` before it goes anywhere; a message larger than one record keeps its head
(header ``dead_truncated_from`` gives its size).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiokafka.errors import KafkaError

from fedcore import topics
from fedcore.envelope import Envelope

if TYPE_CHECKING:  # fedcore.bus hands its subscriptions a DeadLetters
    from fedcore.bus import Bus

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 512
MAX_LOG_CHARS = 1024
_RETRY_S = 1.0


def bounded(text: object, limit: int = MAX_REASON_CHARS) -> str:
    """``text`` on one line and at most ``limit`` characters (a marker says it was cut)."""
    flat = " ".join(str(text).split())
    if len(flat) <= limit:
        return flat
    marker = f"… [{len(flat) - limit + 40} more chars]"
    return flat[: limit - len(marker)] + marker


class DeadLetters:
    """``fl.dead`` for one service; ``count`` (and ``on_dead``, e.g. a Prometheus counter's
    ``inc``) tell how many messages it set aside."""

    def __init__(
        self, bus: Bus, service: str, *, on_dead: Callable[[], object] | None = None
    ) -> None:
        self._bus = bus
        self._service = service
        self._on_dead = on_dead
        self.count = 0

    async def put_envelope(self, env: Envelope, reason: str, *, source: str) -> None:
        """Set aside a decoded envelope (re-encoded as it was read)."""
        await self.put_raw(
            env.job_id.encode()[:256], env.to_bytes(), env.headers(), reason, source=source
        )

    async def put_raw(
        self,
        key: bytes | None,
        value: bytes,
        headers: Sequence[tuple[str, bytes]],
        reason: str,
        *,
        source: str,
    ) -> None:
        """Set aside a record as bytes (one that did not even decode). Waits while Kafka is down:
        the caller must not commit past a message that is neither applied nor set aside."""
        why = bounded(reason)
        where = bounded(source, 200)
        log.error(
            bounded(f"{self._service}: set aside {where} to {topics.DEAD}: {why}", MAX_LOG_CHARS)
        )
        marks = [
            *(h for h in headers if not h[0].startswith("dead_")),
            ("dead_reason", why.encode()),
            ("dead_service", self._service.encode()),
            ("dead_source", where.encode()),
        ]
        if len(value) > self._bus.max_record_bytes:
            # a reassembled message too big for one record: its head is enough to diagnose it
            marks.append(("dead_truncated_from", str(len(value)).encode()))
            value = value[: self._bus.max_record_bytes]
        while True:
            try:
                await self._bus.publish_raw(topics.DEAD, key, value, marks)
                break
            except KafkaError as exc:
                log.warning("cannot write to %s (%r); retrying", topics.DEAD, exc)
                await asyncio.sleep(_RETRY_S)
        self.count += 1
        if self._on_dead is not None:
            self._on_dead()
