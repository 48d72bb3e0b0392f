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

A body comes from another party, so it is decoded with bounds before anything walks it
(:meth:`Batch.decode`): msgpack refuses, while it reads, an array longer than the record limit, a
byte string longer than a record, a string longer than :data:`MAX_STR_CHARS` and extension types;
only then does pydantic check the shape. A batch of five million empty records is thus refused
after reading its first array header, and no error text grows with the input.
:func:`record_problem` is what a record must be to cross, checked by the sender before it sends
(what fails is dead-lettered there) and by the receiver (which refuses the batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, NamedTuple

import msgpack
from pydantic import BaseModel, Field, StrictBytes, StrictInt, StrictStr, ValidationError

from fedcore import codec
from fedcore.bus import MAX_RECORD_BYTES, ChunkLimits, parse_chunk
from fedcore.messages import HEX_ID

PATH = "/v1/records"
PARTY_HEADER = "X-Tessera-Party"
SIGNATURE_HEADER = "X-Tessera-Signature"
CONTENT_TYPE = "application/msgpack"

# names, ids and topics are short; nothing in a batch but a record's key and value is long
MAX_STR_CHARS = 256
MAX_HEADERS = 16
MAX_HEADER_BYTES = 256
# a record as fedcore.bus writes it (a chunk is at most MAX_RECORD_BYTES), with room for its key
MAX_WIRE_RECORD_BYTES = MAX_RECORD_BYTES + 64 * 1024
# the most chunks a message of the consumers' default bound may have
MAX_CHUNKS = ChunkLimits().max_chunks(MAX_RECORD_BYTES)
_MAX_MAP_ITEMS = 16
_UINT63 = 2**63 - 1
_HEAD_FIELDS = frozenset({"id", "src", "dst"})

Header = tuple[Annotated[StrictStr, Field(max_length=MAX_STR_CHARS)], StrictBytes]


class WireError(ValueError):
    """A body is not a valid batch."""


class WireRecord(BaseModel):
    topic: StrictStr
    key: StrictBytes | None
    value: StrictBytes
    headers: Annotated[list[Header], Field(max_length=MAX_HEADERS)]

    def header(self, name: str) -> str | None:
        return find_header(self.headers, name)

    @property
    def size(self) -> int:
        return (
            len(self.value) + len(self.key or b"") + sum(len(k) + len(v) for k, v in self.headers)
        )


class Batch(BaseModel):
    src: StrictStr
    dst: StrictStr
    batch_id: StrictStr
    sent_ms: Annotated[StrictInt, Field(ge=0, le=_UINT63)]
    records: list[WireRecord]
    stream: StrictStr = ""
    seq: Annotated[StrictInt, Field(ge=0, le=_UINT63)] = 0
    base: Annotated[StrictInt, Field(ge=0, le=_UINT63)] = 0

    def encode(self) -> bytes:
        return codec.packb(self.model_dump())

    @classmethod
    def decode(cls, body: bytes, *, max_records: int) -> Batch:
        """A batch of at most ``max_records`` records of at most :data:`MAX_WIRE_RECORD_BYTES`."""
        try:
            raw = msgpack.unpackb(
                body,
                raw=False,
                max_array_len=max(max_records, MAX_HEADERS),
                max_map_len=_MAX_MAP_ITEMS,
                max_str_len=MAX_STR_CHARS,
                max_bin_len=MAX_WIRE_RECORD_BYTES,
                max_ext_len=0,
            )
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise WireError(f"not a batch within the bounds: {exc}") from exc
        try:
            batch = cls.model_validate(raw)
        except ValidationError as exc:
            raise WireError(f"not a valid batch: {summary(exc)}") from exc
        if len(batch.records) > max_records:
            raise WireError(f"a batch holds at most {max_records} records")
        return batch


def summary(exc: ValidationError) -> str:
    """How many fields failed and where the first one is, without the input (a peer's data)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first['msg']}{more}"


def find_header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The first header called ``name``, decoded; None if absent or not UTF-8."""
    for key, value in headers:
        if key == name:
            try:
                return value.decode()
            except UnicodeDecodeError:
                return None
    return None


class Problem(NamedTuple):
    """Why a record may not cross: the HTTP status and code the receiver answers, and a reason."""

    status: int
    code: str
    reason: str


def record_problem(record: WireRecord, *, src: str, dst: str) -> Problem | None:
    """Why ``record`` may not cross from ``src`` to ``dst``, or None.

    The headers must name ``src`` and ``dst`` and carry a well-formed ``id`` (and, on a chunk, a
    bounded ``chunk = i/n``). An unchunked record is the whole envelope: its body must name the
    same ``id``, ``src`` and ``dst`` as its headers, so a consumer that trusts the body is not
    fooled by what the bridge checked. A chunk's body is checked by the consumer once reassembled
    (:class:`fedcore.bus.Subscription` compares it with the chunk headers).
    """
    if record.size > MAX_WIRE_RECORD_BYTES:
        return Problem(
            413, "record_too_large", f"{record.size} bytes, over {MAX_WIRE_RECORD_BYTES}"
        )
    if any(len(value) > MAX_HEADER_BYTES for _, value in record.headers):
        return Problem(400, "bad_header", f"a header value is over {MAX_HEADER_BYTES} bytes")
    head = {name: record.header(name) for name in ("id", "src", "dst", "chunk")}
    if head["src"] != src:
        return Problem(403, "src_mismatch", f"src header {_short(head['src'])} is not {src}")
    if head["dst"] != dst:
        return Problem(403, "dst_mismatch", f"dst header {_short(head['dst'])} is not {dst}")
    if head["id"] is None or not HEX_ID.fullmatch(head["id"]):
        return Problem(400, "no_id", "no id header of 32 lowercase hex digits")
    if head["chunk"] is not None:
        try:
            parse_chunk(head["chunk"], MAX_CHUNKS)
        except ValueError as exc:
            return Problem(400, "bad_chunk", str(exc))
        return None
    try:
        env = _envelope_head(record.value)
    except ValueError as exc:
        return Problem(400, "not_an_envelope", f"the value is not an envelope: {exc}")
    for name in ("id", "src", "dst"):
        if env.get(name) != head[name]:
            return Problem(
                403,
                "body_mismatch",
                f"the envelope's {name} {_short(env.get(name))} is not its header's",
            )
    return None


def _envelope_head(value: bytes) -> dict[str, object]:
    """The routing fields of an encoded envelope, read without building the rest (the body is
    skipped, not decoded: its size is bounded by the record's, its structure is not)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(value)
    head: dict[str, object] = {}
    try:
        for _ in range(unpacker.read_map_header()):
            name = unpacker.unpack()
            if name in _HEAD_FIELDS:
                head[name] = unpacker.unpack()  # a repeated field: the last wins, as in a dict
            else:
                unpacker.skip()
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from exc
    if unpacker.tell() != len(value):
        raise ValueError("bytes after the envelope's map")
    return head


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
