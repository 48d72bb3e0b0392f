"""The step ⇄ worker frame protocol over the step's Unix domain socket.

A frame is a 4-byte big-endian length followed by that many bytes of :mod:`fedcore.codec` (a
msgpack map with a ``kind`` key). Nothing is unpickled: a step can only hand the worker plain
data and numeric arrays, the same things that may cross the party boundary.

Step → worker::

    {"kind": "send",   "dst": party_id, "tag": str, "value": any}
    {"kind": "metric", "name": str, "value": any, "step": int | None}
    {"kind": "log",    "level": str, "line": str}
    {"kind": "done",   "outputs": {name: path}}
    {"kind": "failed", "reason": str, "code": str}   (code: one of fedcore.failures.CODES)

Worker → step::

    {"kind": "fed", "src": party_id, "tag": str, "value": any}
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Final

from fedcore import codec

HEADER_BYTES: Final = 4
# Far above any sane message (fed values are chunked on Kafka anyway); a guard against garbage.
MAX_FRAME_BYTES: Final = 1 << 30

SEND: Final = "send"
METRIC: Final = "metric"
LOG: Final = "log"
DONE: Final = "done"
FAILED: Final = "failed"
FED: Final = "fed"

STEP_KINDS: Final = frozenset({SEND, METRIC, LOG, DONE, FAILED})
WORKER_KINDS: Final = frozenset({FED})

_REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    SEND: ("dst", "tag", "value"),
    METRIC: ("name", "value", "step"),
    LOG: ("level", "line"),
    DONE: ("outputs",),
    FAILED: ("reason",),
    FED: ("src", "tag", "value"),
}

Frame = dict[str, Any]


class FrameError(ValueError):
    """Bytes on the step socket are not a valid frame (bad length, codec or shape)."""


class ChannelClosed(ConnectionError):
    """The other end of the step socket has gone away."""


def encode_pieces(frame: Frame) -> list[bytes | memoryview]:
    """One frame as pieces to write in order: length prefix, then the codec's pieces (an
    encoded array's are not copied: :func:`fedcore.codec.pack_pieces`). Validates first."""
    validate(frame)
    pieces = codec.pack_pieces(frame)
    size = sum(len(p) for p in pieces)
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    return [size.to_bytes(HEADER_BYTES, "big"), *pieces]


def encode(frame: Frame) -> bytes:
    """One frame: length prefix + codec bytes. Validates the frame's shape first."""
    return b"".join(encode_pieces(frame))


def decode(payload: bytes | bytearray, *, int_arrays: bool = False) -> Frame:
    """The frame in ``payload`` (without its length prefix); ``int_arrays``: see
    :func:`fedcore.codec.unpackb` (values may hold views of ``payload``)."""
    try:
        frame = codec.unpackb(payload, int_arrays=int_arrays)
    except codec.CodecError as exc:
        raise FrameError(str(exc)) from exc
    validate(frame)
    return frame  # type: ignore[no-any-return]


def validate(frame: Any) -> None:
    if not isinstance(frame, dict):
        raise FrameError(f"a frame must be a map, got {type(frame).__name__}")
    kind = frame.get("kind")
    if kind not in _REQUIRED:
        raise FrameError(f"unknown frame kind {kind!r}")
    missing = [key for key in _REQUIRED[kind] if key not in frame]
    if missing:
        raise FrameError(f"{kind} frame is missing {missing}")


def _length(header: bytes | bytearray) -> int:
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame length {size} exceeds {MAX_FRAME_BYTES}")
    return size


async def read_frame(reader: asyncio.StreamReader) -> Frame:
    """The next frame from an asyncio stream; :class:`ChannelClosed` at a clean end of stream."""
    try:
        header = await reader.readexactly(HEADER_BYTES)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("stream ended inside a frame header") from exc
        raise ChannelClosed("peer closed the step socket") from exc
    try:
        payload = await reader.readexactly(_length(header))
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended inside a frame") from exc
    return decode(payload)


async def write_frame(writer: asyncio.StreamWriter, frame: Frame) -> None:
    writer.write(encode(frame))
    await writer.drain()


def _recv_exactly(sock: socket.socket, size: int) -> bytearray:
    buf = bytearray(size)  # read in place: a frame may be most of a party's memory
    view = memoryview(buf)
    got = 0
    while got < size:
        count = sock.recv_into(view[got:], min(size - got, 1 << 20))
        if not count:
            if got:
                raise FrameError("socket closed inside a frame")
            raise ChannelClosed("peer closed the step socket")
        got += count
    return buf


def recv_frame(sock: socket.socket, *, int_arrays: bool = False) -> Frame:
    """The next frame from a blocking socket; :class:`ChannelClosed` at a clean end of stream.
    ``int_arrays``: see :func:`decode`."""
    header = _recv_exactly(sock, HEADER_BYTES)
    size = _length(header)
    try:
        payload = _recv_exactly(sock, size)
    except ChannelClosed as exc:
        raise FrameError("socket closed inside a frame") from exc
    return decode(payload, int_arrays=int_arrays)


def send_frame(sock: socket.socket, frame: Frame) -> None:
    for piece in encode_pieces(frame):
        sock.sendall(piece)
