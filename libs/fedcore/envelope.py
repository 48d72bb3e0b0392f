"""The envelope every Tessera record carries, on a party's Kafka and across the bridge.

The envelope's routing fields are also written as Kafka headers so that the bridge can route and
de-duplicate a record without decoding its body. They are held to the formats of
:mod:`fedcore.messages` (32-hex ids, digit party ids, DSL step names) whoever builds the envelope,
so a received record that breaks them fails to decode; its body is checked by
``fedcore.messages.parse_body`` where it is applied.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fedcore import codec
from fedcore.messages import JobId, MessageId, MessageType, PartyId, StepName


def new_id() -> str:
    return uuid.uuid4().hex


class Envelope(BaseModel):
    """One message: who sent it to whom, about which job and step, and its body.

    ``job_id`` is empty only for a message about no job (a worker's heartbeat).
    """

    model_config = ConfigDict(strict=True)

    id: MessageId = Field(default_factory=new_id)
    type: MessageType
    job_id: JobId | Literal[""]
    task: StepName | None = None
    src: PartyId
    dst: PartyId | None = None
    ts: float = Field(default_factory=time.time, ge=0, allow_inf_nan=False)
    body: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return codec.packb(self.model_dump())

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        raw = codec.unpackb(data)
        if not isinstance(raw, dict):
            raise codec.CodecError("an envelope must be a map")
        return cls.model_validate(raw)

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers: enough for the bridge to route and de-duplicate without the body."""
        hdrs = [("id", self.id.encode()), ("type", self.type.encode()), ("src", self.src.encode())]
        if self.dst is not None:
            hdrs.append(("dst", self.dst.encode()))
        return hdrs
