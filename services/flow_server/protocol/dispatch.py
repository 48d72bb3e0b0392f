"""Applying one consumed envelope: de-duplication by (sender, message id), its body parsed into
its bounded model (``fedcore.messages``), the sender's right to send it (``senders``), then its
type's handler, which sees only the model.

A body that does not fit its model raises ``pydantic.ValidationError``, a sender that may not send
the message ``ProtocolError``; the consumer's guard rolls the transaction back and sets the
envelope aside (``flow_server.events``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from fedcore.envelope import Envelope
from fedcore.messages import BODIES
from flow_server.models import ProcessedMessage
from flow_server.protocol import lifecycle, proposals, status
from flow_server.protocol.context import PartyContext
from flow_server.protocol.senders import check_sender

log = logging.getLogger(__name__)

# each handler takes the body as the model fedcore.messages.BODIES has for its type
Handler = Callable[[Session, PartyContext, Envelope, Any], None]

HANDLERS: dict[str, Handler] = {
    "job.propose": proposals.on_propose,
    "job.accept": proposals.on_accept,
    "job.reject": proposals.on_reject,
    "job.start": proposals.on_start,
    "job.status": status.on_job_status,
    "task.status": status.on_task_status,
    "job.stop": lifecycle.on_stop,
    "job.pause": lifecycle.on_pause,
    "job.resume": lifecycle.on_resume,
    "job.rerun": lifecycle.on_rerun,
    "job.delete": lifecycle.on_delete,
}


def apply(session: Session, ctx: PartyContext, env: Envelope) -> bool:
    """Apply one consumed envelope; False if it was skipped (seen before, or not for us)."""
    if session.get(ProcessedMessage, (env.src, env.id)) is not None:
        return False
    session.add(ProcessedMessage(src=env.src, id=env.id))
    if env.dst is not None and env.dst != ctx.me:
        log.warning("skipping %s %s addressed to party %s", env.type, env.id, env.dst)
        return False
    handler = HANDLERS.get(env.type)
    if handler is None:
        return False
    if env.type == "job.status" and env.src == ctx.me:
        return False  # our own announcement on fl.status
    body = BODIES[env.type].of(env)
    check_sender(session, ctx, env, body)
    handler(session, ctx, env, body)
    return True
