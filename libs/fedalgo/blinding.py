"""Commutative blinding of ids with X25519, the primitive under the ECDH private set intersection.

An id is hashed (with a per-job salt) to a Curve25519 u-coordinate P; a party blinds it with its
secret scalar a as a·P (``X25519PrivateKey.exchange``). Scalar multiplication commutes, so
a·(b·P) = b·(a·P): two parties can compare doubly blinded ids without either seeing the other's
ids. Hashed coordinates may land on the quadratic twist; X25519 is twist-secure and its clamped
scalars clear the cofactors, so blinding stays commutative there and collisions stay negligible.

Blinded batches travel as one ``bytes`` value of concatenated 32-byte points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from fedalgo.errors import ProtocolError

if TYPE_CHECKING:
    from fedalgo.computing import Computing

POINT_BYTES = 32
SALT_BYTES = 32


class Blinder:
    """One party's secret scalar for one job."""

    def __init__(self, key: X25519PrivateKey | None = None) -> None:
        self._key = key or X25519PrivateKey.generate()

    def blind(self, points: Sequence[bytes], computing: Computing | None = None) -> list[bytes]:
        """k·P for each point P (long lists on ``computing``'s workers, which get the scalar:
        they are this party's own processes)."""
        if computing is not None and computing.splits(len(points)):
            raw = self._key.private_bytes_raw()
            return [b for part in computing.map_chunks(_blind_chunk, [points], raw) for b in part]
        exchange = self._key.exchange
        from_bytes = X25519PublicKey.from_public_bytes
        try:
            return [exchange(from_bytes(p)) for p in points]
        except ValueError as exc:  # a low-order point: only a malicious peer can produce one
            raise ProtocolError(f"refusing to blind a low-order point: {exc}") from None


def _blind_chunk(points: Sequence[bytes], raw_key: bytes) -> list[bytes]:
    return Blinder(X25519PrivateKey.from_private_bytes(raw_key)).blind(points)


def hash_ids(salt: bytes, ids: Sequence[str], computing: Computing | None = None) -> list[bytes]:
    """Hash each id, salted, to a 32-byte u-coordinate (X25519 ignores the top bit)."""
    if len(salt) != SALT_BYTES:
        raise ProtocolError(f"the intersection salt must be {SALT_BYTES} bytes, got {len(salt)}")
    if computing is not None and computing.splits(len(ids)):
        return [h for part in computing.map_chunks(_hash_chunk, [ids], salt) for h in part]
    return _hash_chunk(ids, salt)


def _hash_chunk(ids: Sequence[str], salt: bytes) -> list[bytes]:
    return [hashlib.sha256(salt + i.encode("utf-8")).digest() for i in ids]


def pack(points: Sequence[bytes]) -> bytes:
    return b"".join(points)


def unpack(blob: object, expected: int | None = None) -> list[bytes]:
    """Split a packed batch, checking its type and, if given, its length."""
    if not isinstance(blob, bytes) or len(blob) % POINT_BYTES:
        raise ProtocolError("a blinded batch must be bytes holding whole 32-byte points")
    count = len(blob) // POINT_BYTES
    if expected is not None and count != expected:
        raise ProtocolError(f"expected {expected} blinded ids, got {count}")
    return [blob[i : i + POINT_BYTES] for i in range(0, len(blob), POINT_BYTES)]
