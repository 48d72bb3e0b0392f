"""The safe wire codec: msgpack with explicit extension types for big integers and numpy arrays.

Nothing decoded here can execute code: the only types that come out are None, bool, int, float,
str, bytes, list, dict and numeric numpy arrays. Object arrays are refused on both sides.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

_BIGINT = 1
_NDARRAY = 2
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


class CodecError(ValueError):
    """A value cannot be encoded, or bytes are not a valid Tessera message."""


def _default(obj: Any) -> Any:
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


def packb(value: Any) -> bytes:
    """Encode a value for the wire."""
    try:
        return msgpack.packb(value, default=_default, use_bin_type=True, strict_types=False)
    except (TypeError, OverflowError) as exc:
        raise CodecError(str(exc)) from exc


def unpackb(data: bytes) -> Any:
    """Decode bytes produced by :func:`packb`."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except (msgpack.UnpackException, ValueError, TypeError) as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"not a valid message: {exc}") from exc
