"""Vectors of Paillier ciphertexts sharing one fixed-point exponent, and their homomorphisms.

``EncryptedVector(public_key, ciphertexts, exponent)``: element i encrypts ``m_i * 16**exponent``
for a signed mantissa m_i. Addition of two vectors multiplies ciphertexts, a plaintext is added as
``g^m = 1 + n*m``, and multiplication by integer mantissas is exponentiation (a negative scalar
uses the inverse ciphertext). :meth:`EncryptedVector.dot_ints` folds a whole vector into one
ciphertext of ``sum_i k_i m_i`` with one bucketed multi-exponentiation (Pippenger), which is far
cheaper than one powmod per element. None of these re-randomise: a result computed from a peer's
ciphertexts must go through :meth:`Encryptor.rerandomise` before it is sent back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np

from fedalgo.errors import ProtocolError
from fedalgo.paillier.encoding import MAX_EXPONENT, decode, encode
from fedalgo.paillier.keys import PrivateKey, PublicKey
from fedcore.codec import IntArray

if TYPE_CHECKING:
    from fedalgo.computing.base import Computing

mpz = gmpy2.mpz


@dataclass(frozen=True)
class EncryptedVector:
    """Paillier ciphertexts of ``mantissa_i * 16**exponent``, all under ``public_key``."""

    public_key: PublicKey
    ciphertexts: list[Any]
    exponent: int

    def __len__(self) -> int:
        return len(self.ciphertexts)

    @property
    def shape(self) -> tuple[int]:
        return (len(self.ciphertexts),)

    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> EncryptedVector:
        """A sub-vector: a slice or an array of positions (as numpy fancy indexing)."""
        if isinstance(index, slice):
            cts = self.ciphertexts[index]
        else:
            cts = [self.ciphertexts[i] for i in np.asarray(index, dtype=np.int64).tolist()]
        return EncryptedVector(self.public_key, cts, self.exponent)

    # -- wire --------------------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        """A codec-encodable form: ``{"ciphertexts": [int, ...], "exponent": int}``."""
        return {"ciphertexts": [int(c) for c in self.ciphertexts], "exponent": self.exponent}

    @classmethod
    def from_wire(
        cls, public_key: PublicKey, wire: Any, *, expected_len: int | None = None
    ) -> EncryptedVector:
        """Rebuild a vector received from a peer, checking every field (:func:`check_wire`)."""
        cts, exponent = check_wire(public_key, wire, expected_len=expected_len)
        return cls(public_key, [mpz(c) for c in cts], exponent)

    # -- homomorphisms -----------------------------------------------------------------------

    def _check_same_key(self, other: EncryptedVector) -> None:
        if other.public_key != self.public_key:
            raise ValueError("the vectors are encrypted under different keys")
        if len(other) != len(self):
            raise ValueError(f"length mismatch: {len(self)} and {len(other)}")

    def rescale(self, exponent: int) -> EncryptedVector:
        """The same values at a lower ``exponent`` (mantissas times 16**(self.exponent - e))."""
        if exponent > self.exponent:
            raise ValueError("rescale can only lower the exponent (it would lose precision)")
        if exponent == self.exponent:
            return self
        factor = mpz(16) ** (self.exponent - exponent)
        nsq = self.public_key.nsquare
        return EncryptedVector(
            self.public_key, [gmpy2.powmod(c, factor, nsq) for c in self.ciphertexts], exponent
        )

    def __add__(self, other: EncryptedVector | np.ndarray) -> EncryptedVector:
        """Element-wise sum with another vector (exponents aligned) or a float array."""
        if isinstance(other, np.ndarray):
            return self.add_ints(encode(other, self.exponent).tolist())
        if not isinstance(other, EncryptedVector):
            return NotImplemented
        self._check_same_key(other)
        exponent = min(self.exponent, other.exponent)
        a, b = self.rescale(exponent), other.rescale(exponent)
        nsq = self.public_key.nsquare
        cts = [x * y % nsq for x, y in zip(a.ciphertexts, b.ciphertexts, strict=True)]
        return EncryptedVector(self.public_key, cts, exponent)

    def add_ints(self, mantissas: Sequence[int]) -> EncryptedVector:
        """Add signed plaintext mantissas at this vector's exponent (no new randomness)."""
        if len(mantissas) != len(self):
            raise ValueError(f"length mismatch: {len(self)} and {len(mantissas)}")
        n, nsq = self.public_key.n_mpz, self.public_key.nsquare
        cts = [
            c * (1 + n * (int(m) % n)) % nsq
            for c, m in zip(self.ciphertexts, mantissas, strict=True)
        ]
        return EncryptedVector(self.public_key, cts, self.exponent)

    def mul(self, values: np.ndarray, exponent: int) -> EncryptedVector:
        """Element-wise product with floats encoded at ``exponent``."""
        return self.mul_ints(encode(values, exponent).tolist(), exponent)

    def mul_ints(self, mantissas: Sequence[int], exponent: int = 0) -> EncryptedVector:
        """Element-wise product with signed integer mantissas at ``exponent``."""
        if len(mantissas) != len(self):
            raise ValueError(f"length mismatch: {len(self)} and {len(mantissas)}")
        nsq = self.public_key.nsquare
        cts = []
        for c, k in zip(self.ciphertexts, mantissas, strict=True):
            k = int(k)
            base = c if k >= 0 else gmpy2.invert(c, nsq)
            cts.append(gmpy2.powmod(base, abs(k), nsq))
        return EncryptedVector(self.public_key, cts, self.exponent + exponent)

    def dot_ints(
        self, mantissas: np.ndarray, exponent: int = 0, *, pool: Computing | None = None
    ) -> EncryptedVector:
        """The one-element vector ``[[sum_i k_i m_i]]`` for int64 mantissas ``k`` at ``exponent``.

        Non-negative scalars are cheapest: a negative one costs a modular inverse.
        """
        k = np.asarray(mantissas)
        if k.shape != (len(self),):
            raise ValueError(f"expected {len(self)} scalars, got shape {k.shape}")
        if k.dtype.kind not in "iu":
            raise TypeError("dot_ints needs integer mantissas (see encode)")
        nsq = self.public_key.nsquare
        bases = self.ciphertexts
        if (k < 0).any():
            bases = [gmpy2.invert(c, nsq) if s else c for c, s in zip(bases, (k < 0), strict=True)]
        exps = np.abs(k).astype(np.int64)
        if pool is not None and pool.splits(len(bases)):
            result = pool.multi_exp(bases, exps, nsq)
        else:
            result = multi_exp(bases, exps, nsq)
        return EncryptedVector(self.public_key, [result], self.exponent + exponent)


def decrypt_ints(private_key: PrivateKey, vector: EncryptedVector) -> list[int]:
    """The signed mantissas of ``vector``; an out-of-range plaintext raises OverflowError."""
    if vector.public_key != private_key.public_key:
        raise ValueError("the vector was encrypted under another key")
    return private_key.decrypt_ints(vector.ciphertexts)


def decrypt(private_key: PrivateKey, vector: EncryptedVector) -> np.ndarray:
    """The float values of ``vector``."""
    return decode(decrypt_ints(private_key, vector), vector.exponent)


def _window(count: int, bits: int) -> int:
    """The bucket width that minimises Pippenger's multiplication count."""
    return min(range(1, 17), key=lambda w: -(-bits // w) * (count + 2 ** (w + 1)))


def multi_exp(bases: Sequence[Any], exps: np.ndarray, modulus: Any) -> Any:
    """``prod(b ** e) mod modulus`` for non-negative int64 exponents (Pippenger's buckets)."""
    bits = int(exps.max()).bit_length() if exps.size else 0
    if bits == 0:
        return mpz(1)
    w = _window(len(bases), bits)
    mask = (1 << w) - 1
    result = None
    for shift in range(((bits - 1) // w) * w, -1, -w):
        if result is not None:
            for _ in range(w):
                result = result * result % modulus
        digits = (exps >> shift) & mask
        nonzero = np.flatnonzero(digits)
        buckets: list[Any] = [None] * (mask + 1)
        for i, d in zip(nonzero.tolist(), digits[nonzero].tolist(), strict=True):
            cur = buckets[d]
            buckets[d] = bases[i] if cur is None else cur * bases[i] % modulus
        # sum_d d * bucket[d], as products: a running product from the top digit down.
        running = acc = None
        for d in range(mask, 0, -1):
            if buckets[d] is not None:
                running = buckets[d] if running is None else running * buckets[d] % modulus
            if running is not None:
                acc = running if acc is None else acc * running % modulus
        if acc is not None:
            result = acc if result is None else result * acc % modulus
    return mpz(1) if result is None else result


def wire_parts(
    public_key: PublicKey, wire: Any, *, expected_len: int | None = None
) -> tuple[list[Any] | IntArray, int]:
    """The ciphertexts (as received: a list, or a :class:`fedcore.codec.IntArray` still
    encoded) and exponent of an encrypted vector from a peer, its shape and exponent checked but
    NOT its ciphertexts: the caller checks those where it decodes them (:func:`ciphertext_product`
    and :func:`check_product`). :func:`check_wire` does both."""
    if not isinstance(wire, dict) or set(wire) != {"ciphertexts", "exponent"}:
        raise ProtocolError("an encrypted vector must be {ciphertexts, exponent}")
    cts, exponent = wire["ciphertexts"], wire["exponent"]
    if not isinstance(exponent, int) or isinstance(exponent, bool) or abs(exponent) > MAX_EXPONENT:
        raise ProtocolError(f"bad exponent {exponent!r}")
    if not isinstance(cts, list | IntArray):
        raise ProtocolError("ciphertexts must be a list")
    if expected_len is not None and len(cts) != expected_len:
        raise ProtocolError(f"expected {expected_len} ciphertexts, got {len(cts)}")
    return cts, exponent


def ciphertext_product(cts: Sequence[Any], n: int) -> int:
    """The product mod n of ciphertexts from a peer, each checked to be an integer in
    (0, n^2) (ProtocolError if one is not): what :func:`check_product` then checks."""
    nsq = n * n
    for c in cts:
        if not isinstance(c, int) or isinstance(c, bool) or not 0 < c < nsq:
            raise ProtocolError("a ciphertext is not an integer in (0, n^2)")
    product = mpz(1)
    for c in cts:
        product = product * c % n
    return int(product)


def product_or_error(cts: Sequence[Any], n: int) -> int | str:
    """:func:`ciphertext_product`, or what is wrong with a ciphertext as a string: an engine's
    worker checks its share of a peer's ciphertexts with it, and :func:`check_parts` raises."""
    try:
        return ciphertext_product(cts, n)
    except ProtocolError as exc:
        return str(exc)


def check_parts(parts: Iterable[int | str], n: int, what: str) -> None:
    """Refuse a peer's ciphertexts (``what`` they are) from the :func:`product_or_error` of
    each part: every ciphertext in range, and their product checked by :func:`check_product`."""
    product = 1
    for part in parts:
        if isinstance(part, str):
            raise ProtocolError(f"{what}: {part}")
        product = product * part % n
    try:
        check_product(product, n)
    except ProtocolError as exc:
        raise ProtocolError(f"{what}: {exc}") from None


def check_product(product: int, n: int) -> None:
    """Refuse ciphertexts whose product mod n (:func:`ciphertext_product`, of all of them or
    of the products of their parts) shares a factor with n.

    A ciphertext sharing a factor with n would reveal the factorisation (and cannot come from
    encryption). n's factors are prime, so one shares a factor with the product of all of them
    mod n exactly when it divides one of them: one gcd for the whole vector."""
    if gmpy2.gcd(product, n) != 1:
        raise ProtocolError("a ciphertext is not invertible modulo n^2")


def check_wire(
    public_key: PublicKey, wire: Any, *, expected_len: int | None = None
) -> tuple[list[int], int]:
    """The ciphertexts (as ints, in this process) and exponent of an encrypted vector from a
    peer, every field checked: what :meth:`EncryptedVector.from_wire` builds on."""
    cts, exponent = wire_parts(public_key, wire, expected_len=expected_len)
    ints = cts.ints() if isinstance(cts, IntArray) else cts
    check_product(ciphertext_product(ints, public_key.n), public_key.n)
    return ints, exponent
