"""Records no subscription can hand out as an envelope, to check that a consumer sets them aside
on fl.dead (``Bus.subscribe``'s ``dead_letters``) instead of skipping them unseen."""

from __future__ import annotations

import uuid

from fedcore.bus import Bus


async def publish_unreadable(bus: Bus, topic: str) -> set[str]:
    """Bytes that are no envelope, and the first chunk of a message claiming a million chunks
    (refused at once by the chunk bounds), onto ``topic``; their keys (job ids) are returned."""
    garbage, bomb = uuid.uuid4().hex, uuid.uuid4().hex
    await bus.publish_raw(topic, garbage.encode(), b"\xc1 not an envelope", [])
    chunk = [("id", uuid.uuid4().hex.encode()), ("chunk", b"0/1000000")]
    await bus.publish_raw(topic, bomb.encode(), b"\x00" * 1000, chunk)
    return {garbage, bomb}
