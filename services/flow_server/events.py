"""The event consumer: ``fl.in.ctl`` (other parties) and ``fl.status`` (this party's task_engine).

Each envelope is applied in one database transaction; the outbox it filled is published; only
then is its offset committed. Every envelope is applied inside a guard, so that no message,
whatever it holds, can stop or wedge the consumer:

* a *transient* failure (Kafka or the database unreachable) retries the same envelope after a
  pause, for as long as it takes;
* anything else (a body that does not fit its model, a sender that may not send it, a move the
  state table forbids, a value the database refuses, a recursion or type error in a handler) is
  a message that can never be applied: its transaction is rolled back, it is set aside on
  ``fl.dead`` with the reason (``fedcore.deadletter``: one bounded log line, a counter), and the
  offset moves past it.

A record that is not even an envelope (it does not decode, breaks the chunk bounds, or its body
names another id, src or dst than its headers) is set aside on ``fl.dead`` by the subscription
itself (``Bus.subscribe``'s ``dead_letters``), counted under the type ``other``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from fedcore import logs, topics
from fedcore.bus import Bus
from fedcore.deadletter import DeadLetters
from fedcore.envelope import Envelope
from fedcore.messages import describe

log = logging.getLogger(__name__)

Apply = Callable[[Envelope], Awaitable[None]]
SERVICE = "flow_server"
SOURCE = f"{topics.IN_CTL}|{topics.STATUS}"
# losing the connection is transient; an OSError from a handler (a path a peer named) is not
CONNECTION = (KafkaError, OperationalError, ConnectionError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """Would the same envelope apply once Kafka or the database is back?"""
    if isinstance(exc, CONNECTION):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def reason(exc: BaseException) -> str:
    """Why an envelope cannot be applied, in one line that repeats none of its values where the
    error would (pydantic's input, the SQL parameters of a database error)."""
    if isinstance(exc, ValidationError):
        return describe(exc)
    if isinstance(exc, DBAPIError):
        first = str(exc.orig).splitlines()[0] if exc.orig is not None else ""
        return f"database refused it ({type(exc.orig).__name__}): {first}"
    return f"{type(exc).__name__}: {exc}"


class EventConsumer:
    """One consumer-group member applying envelopes in order; ``start()`` / ``stop()``.

    ``on_dead(kind)`` is called for each message set aside (after it reached ``fl.dead``):
    ``kind`` is the envelope's type, or ``"record"`` for a record the subscription could not
    hand out as an envelope (it does not decode, breaks the chunk bounds, or its headers and body
    disagree).
    """

    def __init__(
        self,
        bus: Bus,
        *,
        group_id: str,
        apply: Apply,
        retry_delay_s: float = 1.0,
        on_dead: Callable[[str], object] | None = None,
    ) -> None:
        self._bus = bus
        self._group_id = group_id
        self._apply = apply
        self._retry_delay_s = retry_delay_s
        self._on_dead = on_dead
        self._dead = DeadLetters(bus, SERVICE)
        self._dead_records = DeadLetters(
            bus, SERVICE, on_dead=None if on_dead is None else lambda: on_dead("record")
        )
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def dead_letters(self) -> int:
        return self._dead.count + self._dead_records.count

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
            except (*CONNECTION, OSError) as exc:
                log.warning("event consumer: %r; reconnecting in %.1fs", exc, self._retry_delay_s)
                await asyncio.sleep(self._retry_delay_s)

    async def _consume(self) -> None:
        async with self._bus.subscribe(
            [topics.IN_CTL, topics.STATUS],
            group_id=self._group_id,
            dead_letters=self._dead_records,
        ) as sub:
            async for env in sub:
                await self._guarded(env)
                await sub.commit()

    async def _guarded(self, env: Envelope) -> None:
        """Apply ``env``, retrying while the failure is transient; set it aside otherwise."""
        with logs.bind_envelope(env):
            await self._apply_or_set_aside(env)

    async def _apply_or_set_aside(self, env: Envelope) -> None:
        while True:
            try:
                await self._apply(env)
                return
            except Exception as exc:  # the guard: nothing a message holds may end the consumer
                if is_transient(exc):
                    log.warning("applying %s %s: %r; retrying", env.type, env.id, exc)
                    await asyncio.sleep(self._retry_delay_s)
                    continue
                why = f"{env.type} {env.id} from {env.src}: {reason(exc)}"
                await self._dead.put_envelope(env, why, source=SOURCE)
                if self._on_dead is not None:
                    self._on_dead(env.type)
                return
