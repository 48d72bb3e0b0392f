"""The event consumer: ``fl.in.ctl`` (other parties) and ``fl.status`` (this party's task_engine).

Each envelope is applied in one database transaction; the outbox it filled is published; only
then is its offset committed. A transient failure (database or Kafka unavailable) retries the
same envelope after a pause; an envelope that cannot be decoded or makes no sense is logged and
skipped; anything else stops the consumer (and ``/health`` reports it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError

from fedcore import logs, topics
from fedcore.bus import Bus
from fedcore.codec import CodecError
from fedcore.envelope import Envelope

log = logging.getLogger(__name__)

Apply = Callable[[Envelope], Awaitable[None]]
TRANSIENT = (KafkaError, OperationalError, OSError)


class EventConsumer:
    """One consumer-group member applying envelopes in order; ``start()`` / ``stop()``."""

    def __init__(
        self, bus: Bus, *, group_id: str, apply: Apply, retry_delay_s: float = 1.0
    ) -> None:
        self._bus = bus
        self._group_id = group_id
        self._apply = apply
        self._retry_delay_s = retry_delay_s
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"consumer {self._group_id}")
            self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.error = exc
            log.error("event consumer stopped: %r", exc, exc_info=exc)

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Cancel the loop (every event is idempotent, so one cut short is simply re-read)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, timeout_s)

    async def _run(self) -> None:
        while True:
            try:
                await self._consume()
            except TRANSIENT as exc:
                log.warning("event consumer: %r; reconnecting in %.1fs", exc, self._retry_delay_s)
                await asyncio.sleep(self._retry_delay_s)

    async def _consume(self) -> None:
        async with self._bus.subscribe(
            [topics.IN_CTL, topics.STATUS], group_id=self._group_id
        ) as sub:
            records = aiter(sub)
            while True:
                try:
                    env = await anext(records)
                except (CodecError, ValidationError) as exc:
                    log.error("skipping a record that is not a valid envelope: %s", exc)
                    await sub.commit()
                    records = aiter(sub)
                    continue
                await self._apply_with_retry(env)
                await sub.commit()

    async def _apply_with_retry(self, env: Envelope) -> None:
        with logs.bind_envelope(env):
            await self._apply_until_done(env)

    async def _apply_until_done(self, env: Envelope) -> None:
        while True:
            try:
                await self._apply(env)
                return
            except TRANSIENT as exc:
                log.warning("applying %s %s: %r; retrying", env.type, env.id, exc)
                await asyncio.sleep(self._retry_delay_s)
