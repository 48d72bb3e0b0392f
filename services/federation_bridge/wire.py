"""The bridge's wire format: one signed batch of raw Kafka records per ``POST /v1/records``.

Body: msgpack (fedcore.codec) of ``{src, dst, batch_id, sent_ms, stream, seq, base, records:
[{topic, key, value, headers}]}``, where ``topic`` is the receiver's inbound topic,
``key``/``value`` are the record's bytes untouched and ``headers`` its Kafka headers as
``[name, bytes]`` pairs in order. ``stream`` names one sender process's sequence of batches to
this peer, ``seq`` numbers the batch in it and ``base`` is the lowest ``seq`` the sender has no
2xx for yet: the receiver applies a stream's batches in ``seq`` order
(:mod:`federation_bridge.ordering`). A batch without a stream (``""``) is applied as it comes.
HTTP headers: ``X-Tessera-Party`` (the sender's party id) and ``X-Tessera-Signature`` (base64
Ed25519 signature over the exact body bytes).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, StrictBytes, StrictInt, StrictStr, ValidationError

from fedcore import codec

PATH = "/v1/records"
PARTY_HEADER = "X-Tessera-Party"
SIGNATURE_HEADER = "X-Tessera-Signature"
CONTENT_TYPE = "application/msgpack"


class WireError(ValueError):
    """A body is not a valid batch."""


class WireRecord(BaseModel):
    topic: StrictStr
    key: StrictBytes | None
    value: StrictBytes
    headers: list[tuple[StrictStr, StrictBytes]]

    def header(self, name: str) -> str | None:
        return find_header(self.headers, name)


class Batch(BaseModel):
    src: StrictStr
    dst: StrictStr
    batch_id: StrictStr
    sent_ms: StrictInt
    records: list[WireRecord]
    stream: StrictStr = ""
    seq: StrictInt = 0
    base: StrictInt = 0

    def encode(self) -> bytes:
        return codec.packb(self.model_dump())

    @classmethod
    def decode(cls, body: bytes) -> Batch:
        try:
            return cls.model_validate(codec.unpackb(body))
        except (codec.CodecError, ValidationError) as exc:
            raise WireError(f"not a valid batch: {exc}") from exc


def find_header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The first header called ``name``, decoded; None if absent or not UTF-8."""
    for key, value in headers:
        if key == name:
            try:
                return value.decode()
            except UnicodeDecodeError:
                return None
    return None
