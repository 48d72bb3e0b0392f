"""The envelope every Tessera record carries, on a party's Kafka and across the bridge.

The envelope's routing fields are also written as Kafka headers so that the bridge can route and
de-duplicate a record without decoding its body.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from pydantic import BaseModel, Field

from fedcore import codec


def new_id() -> str:
    return uuid.uuid4().hex


class Envelope(BaseModel):
    """One message: who sent it to whom, about which job and step, and its body."""

    id: str = Field(default_factory=new_id)
    type: str
    job_id: str
    task: str | None = None
    src: str
    dst: str | None = None
    ts: float = Field(default_factory=time.time)
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
