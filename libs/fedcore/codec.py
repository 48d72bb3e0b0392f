"""The safe wire codec: msgpack with explicit extension types for big integers and numpy arrays.

Nothing decoded here can execute code: the only types that come out are None, bool, int, float,
str, bytes, list, dict, numeric numpy arrays and (when asked) :class:`IntArray`. Object arrays
are refused on both sides.

Long arrays of big integers (Paillier ciphertexts: a million of them is half a gigabyte) can stay
in their encoded form on both sides, without changing a byte of what crosses: a sender hands
:func:`packb` an :class:`EncodedArray` whose elements its workers encoded (:func:`encode_items`),
and a receiver that decodes with ``int_arrays=True`` gets an :class:`IntArray`, a view of the
received bytes that its workers decode (:meth:`IntArray.ints`). A process that only passes
ciphertexts along then holds them once, as bytes, never as Python ints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

_BIGINT = 1
_NDARRAY = 2
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1
_MAX_DEPTH = 64


class CodecError(ValueError):
    """A value cannot be encoded, or bytes are not a valid Tessera message."""


class EncodedArray:
    """An array whose ``count`` elements are already encoded: ``pieces`` are their encodings
    (:func:`encode_items`) one after the other. :func:`pack_pieces` puts the pieces in the
    message as they are, so the caller never builds the elements or a second copy of them."""

    def __init__(self, count: int, pieces: Sequence[bytes | memoryview]) -> None:
        self.count = count
        self.pieces = list(pieces)

    def __len__(self) -> int:
        return self.count


class IntArray:
    """A received array of big integers kept as its elements' encodings (``int_arrays=True``).

    ``data`` holds them one after the other, element i at ``data[offsets[i]:offsets[i + 1]]``;
    every element was checked to be a well-formed big integer when the message was decoded.
    Slices are views; pickling (to this party's own workers) copies just the slice's bytes.
    """

    def __init__(self, data: bytes | bytearray | memoryview, offsets: np.ndarray) -> None:
        self.data = memoryview(data)
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: slice) -> IntArray:
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("an IntArray slices in steps of 1 only")
        stop = max(start, stop)
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        return IntArray(self.data[first:last], self.offsets[start : stop + 1] - first)

    def __reduce__(self) -> tuple[Any, ...]:
        return IntArray, (bytes(self.data), self.offsets)

    def ints(self) -> list[int]:
        """The integers (this is where they are built: in whichever process calls it)."""
        return unpackb(_array_header(len(self)) + bytes(self.data))  # type: ignore[no-any-return]

    def encoded(self) -> EncodedArray:
        """The same elements, to send on (byte for byte what was received)."""
        return EncodedArray(len(self), [self.data])


class _Encoded(Exception):
    """Raised by msgpack's ``default`` hook at an already-encoded array: pack in pieces."""


def _default(obj: Any) -> Any:
    if isinstance(obj, EncodedArray | IntArray):
        raise _Encoded
    if isinstance(obj, int):  # only reached for ints outside msgpack's 64-bit range
        sign = b"-" if obj < 0 else b"+"
        mag = abs(obj)
        return msgpack.ExtType(_BIGINT, sign + mag.to_bytes((mag.bit_length() + 7) // 8, "big"))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc":
            raise CodecError(f"numpy arrays of dtype {obj.dtype} cannot cross the wire")
        arr = np.ascontiguousarray(obj)
        header = msgpack.packb([arr.dtype.str, list(arr.shape)])
        return msgpack.ExtType(_NDARRAY, len(header).to_bytes(4, "big") + header + arr.tobytes())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise CodecError(f"type {type(obj).__name__} cannot cross the wire")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _BIGINT:
        if not data or data[:1] not in (b"+", b"-"):
            raise CodecError("malformed big integer")
        mag = int.from_bytes(data[1:], "big")
        return -mag if data[:1] == b"-" else mag
    if code == _NDARRAY:
        n = int.from_bytes(data[:4], "big")
        dtype_str, shape = msgpack.unpackb(data[4 : 4 + n])
        dtype = np.dtype(dtype_str)
        if dtype.kind not in "biufc":
            raise CodecError(f"refusing numpy dtype {dtype_str}")
        return np.frombuffer(data[4 + n :], dtype=dtype).reshape(shape).copy()
    raise CodecError(f"unknown extension type {code}")


def _array_header(count: int) -> bytes:
    return msgpack.Packer().pack_array_header(count)


def _plain_packb(value: Any) -> bytes:
    try:
        return msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False)
    except (TypeError, OverflowError) as exc:
        raise CodecError(str(exc)) from exc


_NESTED = (EncodedArray, IntArray, dict, list, tuple)


def _holds_encoded(value: Any) -> bool:
    if isinstance(value, EncodedArray | IntArray):
        return True
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return False
    # only containers can hold one, and a long list of scalars is ruled out by its few types
    if not any(issubclass(t, _NESTED) for t in set(map(type, items))):
        return False
    return any(_holds_encoded(v) for v in items if isinstance(v, _NESTED))


def _pack_into(value: Any, out: list[bytes | memoryview]) -> None:
    if not _holds_encoded(value):
        out.append(_plain_packb(value))
    elif isinstance(value, EncodedArray):
        out.append(_array_header(value.count))
        out.extend(value.pieces)
    elif isinstance(value, IntArray):
        out += [_array_header(len(value)), value.data]
    elif isinstance(value, dict):
        out.append(msgpack.Packer().pack_map_header(len(value)))
        for key, item in value.items():
            out.append(_plain_packb(key))
            _pack_into(item, out)
    else:
        out.append(_array_header(len(value)))
        for item in value:
            _pack_into(item, out)


def pack_pieces(value: Any) -> list[bytes | memoryview]:
    """:func:`packb`'s bytes as pieces, to write one after the other: the pieces of an
    :class:`EncodedArray` (or an :class:`IntArray`'s data) are among them, not copied."""
    out: list[bytes | memoryview] = []
    _pack_into(value, out)
    return out


def packb(value: Any) -> bytes:
    """Encode a value for the wire."""
    try:
        return _plain_packb(value)  # the common case, without walking the value first
    except _Encoded:
        return b"".join(pack_pieces(value))


def encode_items(values: Sequence[Any]) -> bytes:
    """The encodings of ``values`` one after the other: an :class:`EncodedArray`'s piece."""
    return packb(list(values))[len(_array_header(len(values))) :]


def unpackb(data: bytes | bytearray | memoryview, *, int_arrays: bool = False) -> Any:
    """Decode bytes produced by :func:`packb`.

    With ``int_arrays``, every non-empty array whose elements are all big integers comes back as
    an :class:`IntArray` over ``data`` (checked, not built; :func:`materialise` builds them).
    """
    if int_arrays:
        view = memoryview(data)
        try:
            value, end = _Reader(view).read(0, 0)
        except IndexError:  # a length that runs past the end
            raise CodecError("not a valid message: truncated") from None
        if end != len(view):
            raise CodecError("not a valid message: extra bytes after the value")
        return value
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"not a valid message: {exc}") from exc


def materialise(value: Any) -> Any:
    """``value`` with every :class:`IntArray` in it decoded to a list of ints."""
    if isinstance(value, IntArray):
        return value.ints()
    if isinstance(value, dict) and _holds_encoded(value):
        return {k: materialise(v) for k, v in value.items()}
    if isinstance(value, list) and _holds_encoded(value):
        return [materialise(v) for v in value]
    return value


# Sizes of msgpack's fixed-length types (first byte -> total bytes), and of the length fields of
# the variable ones (first byte -> (bytes of the length, bytes before the payload besides it)).
_FIXED = {0xC0: 1, 0xC2: 1, 0xC3: 1, 0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9}
_FIXED |= {0xD0: 2, 0xD1: 3, 0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10, 0xD8: 18}
_SIZED = {0xC4: (1, 0), 0xC5: (2, 0), 0xC6: (4, 0), 0xC7: (1, 1), 0xC8: (2, 1), 0xC9: (4, 1)}
_SIZED |= {0xD9: (1, 0), 0xDA: (2, 0), 0xDB: (4, 0)}
_FIXEXT = {0xD4: 1, 0xD5: 2, 0xD6: 4, 0xD7: 8, 0xD8: 16}
_EXT = {0xC7: 1, 0xC8: 2, 0xC9: 4}


class _Reader:
    """Decodes a message, leaving long arrays of big integers encoded (:class:`IntArray`);
    everything else is decoded by msgpack itself, a whole container at a time where possible."""

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self._found: dict[int, tuple[IntArray, int]] = {}  # by position, from _skip to read

    def _uint(self, pos: int, size: int) -> int:
        if pos + size > len(self.buf):
            raise CodecError("not a valid message: truncated")
        return int.from_bytes(self.buf[pos : pos + size], "big")

    def _container(self, pos: int) -> tuple[str, int, int] | None:
        """``(kind, count, start of the first element)`` of a map or array at ``pos``."""
        b = self.buf[pos]
        if 0x80 <= b <= 0x8F:
            return "map", b & 0x0F, pos + 1
        if 0x90 <= b <= 0x9F:
            return "array", b & 0x0F, pos + 1
        if b in (0xDC, 0xDD, 0xDE, 0xDF):
            size = 2 if b in (0xDC, 0xDE) else 4
            return ("array" if b <= 0xDD else "map"), self._uint(pos + 1, size), pos + 1 + size
        return None

    def _scalar_end(self, pos: int) -> int:
        b = self.buf[pos]
        if b <= 0x7F or b >= 0xE0:
            return pos + 1
        if 0xA0 <= b <= 0xBF:
            return pos + 1 + (b & 0x1F)
        if b in _FIXED:
            return pos + _FIXED[b]
        if b in _SIZED:
            size, extra = _SIZED[b]
            return pos + 1 + size + extra + self._uint(pos + 1, size)
        raise CodecError(f"not a valid message: byte 0x{b:02x} at {pos}")

    def _bigint(self, pos: int) -> int | None:
        """The end of a well-formed big integer at ``pos``, or None if there is none."""
        b = self.buf[pos]
        if b in _FIXEXT:
            length, start = _FIXEXT[b], pos + 2
        elif b in _EXT:
            size = _EXT[b]
            length, start = self._uint(pos + 1, size), pos + 2 + size
        else:
            return None
        end = start + length
        if end > len(self.buf) or self.buf[start - 1] != _BIGINT:
            return None
        if length == 0 or self.buf[start] not in b"+-":
            raise CodecError("malformed big integer")
        return end

    def _int_array(self, start: int, count: int) -> tuple[IntArray, int] | None:
        if count == 0 or count > len(self.buf) - start:
            return None
        offsets = np.empty(count + 1, dtype=np.int64)
        pos = start
        for i in range(count):
            offsets[i] = pos - start
            end = self._bigint(pos) if pos < len(self.buf) else None
            if end is None:
                return None
            pos = end
        offsets[count] = pos - start
        return IntArray(self.buf[start:pos], offsets), pos

    def _skip(self, pos: int, depth: int) -> tuple[int, bool]:
        """The end of the item at ``pos``, and whether an :class:`IntArray` may be inside."""
        if depth > _MAX_DEPTH:
            raise CodecError(f"not a valid message: nested deeper than {_MAX_DEPTH}")
        if pos >= len(self.buf):
            raise CodecError("not a valid message: truncated")
        found = self._container(pos)
        if found is None:
            return self._scalar_end(pos), False
        kind, count, pos = found
        if count > len(self.buf) - pos:
            raise CodecError("not a valid message: truncated")
        if kind == "array" and count and self._bigint(pos) is not None:
            ints = self._int_array(pos, count)
            if ints is not None:
                self._found[pos] = ints
                return ints[1], True
        candidate = False
        for _ in range(2 * count if kind == "map" else count):
            pos, inner = self._skip(pos, depth + 1)
            candidate = candidate or inner
        return pos, candidate

    def _decode(self, start: int, end: int) -> Any:
        try:
            return msgpack.unpackb(
                self.buf[start:end], ext_hook=_ext_hook, raw=False, strict_map_key=False
            )
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            if isinstance(exc, CodecError):
                raise
            raise CodecError(f"not a valid message: {exc}") from exc

    def read(self, pos: int, depth: int) -> tuple[Any, int]:
        end, candidate = self._skip(pos, depth)
        if not candidate:
            return self._decode(pos, end), end
        found = self._container(pos)
        assert found is not None  # only containers hold candidates
        kind, count, pos = found
        if pos in self._found:
            return self._found.pop(pos)
        if kind == "array":
            items = []
            for _ in range(count):
                item, pos = self.read(pos, depth + 1)
                items.append(item)
            return items, pos
        out = {}
        for _ in range(count):
            key, pos = self.read(pos, depth + 1)
            if isinstance(key, IntArray):
                raise CodecError("not a valid message: an array as a map key")
            try:
                out[key], pos = self.read(pos, depth + 1)
            except TypeError as exc:  # an unhashable key
                raise CodecError(f"not a valid message: {exc}") from exc
        return out, pos
