"""Vectorised Paillier on top of python-paillier (``phe``) keys and gmpy2 arithmetic.

A vector is a list of raw ciphertexts sharing one base-16 exponent, so element ``i`` is exactly
``phe.EncryptedNumber(public_key, ciphertexts[i], exponent)`` (see :meth:`EncryptedVector.to_phe`).
Working on the raw integers, instead of one ``EncryptedNumber`` at a time, lets us:

* encrypt with the secret key by the Chinese remainder theorem. The obfuscator r^n mod n^2 of
  standard encryption is a uniformly random element of the subgroup of n-th residues, which by
  CRT is the product of the order-(p-1) subgroup mod p^2 and the order-(q-1) subgroup mod q^2.
  For t uniform in (Z/p^2)*, t^p is uniform in the former (x -> x^p is onto, with kernel of size
  p), likewise t^q mod q^2. So ciphertexts have exactly the distribution of phe's, in about a
  quarter of the time (exponents of half the size, modulo numbers of half the size);
* compute X^T [[d]] with one bucketed multi-exponentiation per column (Pippenger), on
  fixed-point mantissas, instead of a modular exponentiation and exponent alignment per element;
* release the GIL in gmpy2's list functions, so long vectors use every core.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeAlias

import gmpy2
import numpy as np
from phe import paillier
from phe.paillier import PaillierPrivateKey, PaillierPublicKey

from fedalgo.errors import ProtocolError

BASE = paillier.EncodedNumber.BASE  # 16: exponents count hex digits, as in phe
_MAX_MANTISSA_BITS = 62  # mantissas are computed in int64 before they become big integers
_MIN_CHUNK = 16

PublicKey: TypeAlias = PaillierPublicKey
PrivateKey: TypeAlias = PaillierPrivateKey
mpz = gmpy2.mpz


def generate_keypair(key_bits: int) -> tuple[PublicKey, PrivateKey]:
    return paillier.generate_paillier_keypair(n_length=key_bits)


def public_key_from_n(n: int) -> PublicKey:
    return paillier.PaillierPublicKey(int(n))


def encode(values: np.ndarray, exponent: int) -> np.ndarray:
    """Fixed-point mantissas ``round(v * 16**-exponent)`` as int64."""
    scaled = np.rint(np.asarray(values, dtype=np.float64) * float(BASE) ** -exponent)
    if scaled.size and np.abs(scaled).max() >= 2.0**_MAX_MANTISSA_BITS:
        raise OverflowError(
            f"values up to {np.abs(values).max():.3g} do not fit at exponent {exponent}; "
            "scale the features first"
        )
    return scaled.astype(np.int64)


def _powmod_all(jobs: Sequence[tuple[list[Any], Any, Any]]) -> list[list[Any]]:
    """``[powmod(b, e, m) for b in bases]`` for each ``(bases, e, m)`` job, on all cores."""
    workers = os.cpu_count() or 1
    chunks: list[tuple[int, list[Any], Any, Any]] = []
    for j, (bases, exp, mod) in enumerate(jobs):
        size = max(_MIN_CHUNK, math.ceil(len(bases) / workers))
        for start in range(0, len(bases), size):
            chunks.append((j, bases[start : start + size], exp, mod))
    out: list[list[Any]] = [[] for _ in jobs]
    if len(chunks) <= 1:
        for j, bases, exp, mod in chunks:
            out[j] = gmpy2.powmod_base_list(bases, exp, mod)
        return out
    with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
        results = pool.map(lambda c: gmpy2.powmod_base_list(c[1], c[2], c[3]), chunks)
        for (j, *_), part in zip(chunks, results, strict=True):
            out[j].extend(part)
    return out


def _obfuscators(public_key: PublicKey, count: int, private_key: PrivateKey | None) -> list[Any]:
    """``count`` fresh random n-th residues mod n^2 (see the module docstring for the CRT form)."""
    n = mpz(public_key.n)
    nsq = n * n
    if private_key is None:
        rs = [mpz(secrets.randbelow(public_key.n - 1) + 1) for _ in range(count)]
        return _powmod_all([(rs, n, nsq)])[0]
    p, q = mpz(private_key.p), mpz(private_key.q)
    psq, qsq = p * p, q * q
    tp = [_unit_below(psq, p) for _ in range(count)]
    tq = [_unit_below(qsq, q) for _ in range(count)]
    rp, rq = _powmod_all([(tp, p, psq), (tq, q, qsq)])
    qsq_inv = gmpy2.invert(qsq, psq)
    return [b + qsq * ((a - b) * qsq_inv % psq) for a, b in zip(rp, rq, strict=True)]


def _unit_below(modulus: Any, prime: Any) -> Any:
    while True:
        t = mpz(secrets.randbelow(int(modulus) - 1) + 1)
        if t % prime:
            return t


@dataclass(frozen=True)
class EncryptedVector:
    """Paillier ciphertexts of ``mantissa_i * 16**exponent``, all under ``public_key``."""

    public_key: PublicKey
    ciphertexts: list[Any]
    exponent: int

    def __len__(self) -> int:
        return len(self.ciphertexts)

    def to_wire(self) -> dict[str, Any]:
        """A codec-encodable form: ``{"ciphertexts": [int, ...], "exponent": int}``."""
        return {"ciphertexts": [int(c) for c in self.ciphertexts], "exponent": self.exponent}

    @classmethod
    def from_wire(
        cls, public_key: PublicKey, wire: Any, *, expected_len: int | None = None
    ) -> EncryptedVector:
        """Rebuild a vector received from a peer, checking every field."""
        if not isinstance(wire, dict) or set(wire) != {"ciphertexts", "exponent"}:
            raise ProtocolError("an encrypted vector must be {ciphertexts, exponent}")
        cts, exponent = wire["ciphertexts"], wire["exponent"]
        if not isinstance(exponent, int) or isinstance(exponent, bool) or abs(exponent) > 64:
            raise ProtocolError(f"bad exponent {exponent!r}")
        if not isinstance(cts, list):
            raise ProtocolError("ciphertexts must be a list")
        if expected_len is not None and len(cts) != expected_len:
            raise ProtocolError(f"expected {expected_len} ciphertexts, got {len(cts)}")
        nsq = public_key.nsquare
        for c in cts:
            if not isinstance(c, int) or isinstance(c, bool) or not 0 < c < nsq:
                raise ProtocolError("a ciphertext is not an integer in (0, n^2)")
        return cls(public_key, [mpz(c) for c in cts], exponent)

    def to_phe(self) -> list[paillier.EncryptedNumber]:
        return [
            paillier.EncryptedNumber(self.public_key, int(c), self.exponent)
            for c in self.ciphertexts
        ]

    @classmethod
    def from_phe(cls, numbers: Sequence[paillier.EncryptedNumber]) -> EncryptedVector:
        if not numbers:
            raise ValueError("from_phe needs at least one number (it takes their public key)")
        exponent = min(x.exponent for x in numbers)
        aligned = [x.decrease_exponent_to(exponent) for x in numbers]
        return cls(
            numbers[0].public_key, [mpz(x.ciphertext(be_secure=False)) for x in aligned], exponent
        )


def encrypt_mantissas(
    public_key: PublicKey,
    mantissas: Sequence[int],
    exponent: int,
    *,
    private_key: PrivateKey | None = None,
) -> EncryptedVector:
    """Encrypt signed integer mantissas; with ``private_key``, by the faster CRT route."""
    n = mpz(public_key.n)
    nsq = n * n
    obfuscators = _obfuscators(public_key, len(mantissas), private_key)
    # g = n + 1, so g^m = 1 + n*m (mod n^2): no exponentiation for the message itself.
    cts = [(1 + n * (int(m) % n)) * r % nsq for m, r in zip(mantissas, obfuscators, strict=True)]
    return EncryptedVector(public_key, cts, exponent)


def encrypt(
    public_key: PublicKey,
    values: np.ndarray,
    exponent: int,
    *,
    private_key: PrivateKey | None = None,
) -> EncryptedVector:
    """Encrypt a float vector at fixed precision ``16**exponent``."""
    mantissas = encode(values, exponent).tolist()
    return encrypt_mantissas(public_key, mantissas, exponent, private_key=private_key)


def decrypt_mantissas(private_key: PrivateKey, vector: EncryptedVector) -> list[int]:
    """The signed mantissas of ``vector``; an out-of-range plaintext raises OverflowError."""
    if vector.public_key != private_key.public_key:
        raise ValueError("the vector was encrypted under another key")
    p, q = mpz(private_key.p), mpz(private_key.q)
    psq, qsq = p * p, q * q
    cp, cq = _powmod_all([(vector.ciphertexts, p - 1, psq), (vector.ciphertexts, q - 1, qsq)])
    hp, hq, p_inv = mpz(private_key.hp), mpz(private_key.hq), mpz(private_key.p_inverse)
    n = int(private_key.public_key.n)
    max_int = private_key.public_key.max_int
    out = []
    for a, b in zip(cp, cq, strict=True):
        mp = (a - 1) // p * hp % p
        mq = (b - 1) // q * hq % q
        plain = int(mp + (mq - mp) * p_inv % q * p)
        if plain <= max_int:
            out.append(plain)
        elif plain >= n - max_int:
            out.append(plain - n)
        else:
            raise OverflowError("a decrypted value is outside the signed range")
    return out


def decode(mantissas: Sequence[int], exponent: int) -> np.ndarray:
    """Mantissas (of any size) to floats ``m * 16**exponent``, correctly rounded."""
    if exponent >= 0:
        return np.array([float(int(m) * BASE**exponent) for m in mantissas], dtype=np.float64)
    denominator = BASE**-exponent
    return np.array([int(m) / denominator for m in mantissas], dtype=np.float64)


def decrypt(private_key: PrivateKey, vector: EncryptedVector) -> np.ndarray:
    return decode(decrypt_mantissas(private_key, vector), vector.exponent)


def add_mantissas(vector: EncryptedVector, mantissas: Sequence[int]) -> EncryptedVector:
    """``[[v + m]]`` with fresh randomness, so the result does not reveal how it was computed."""
    fresh = encrypt_mantissas(vector.public_key, mantissas, vector.exponent)
    nsq = mpz(vector.public_key.nsquare)
    cts = [a * b % nsq for a, b in zip(vector.ciphertexts, fresh.ciphertexts, strict=True)]
    return EncryptedVector(vector.public_key, cts, vector.exponent)


def matvec_t(x_mantissas: np.ndarray, vector: EncryptedVector, x_exponent: int) -> EncryptedVector:
    """``[[X^T v]]`` for integer mantissas ``X`` (rows x columns) at ``16**x_exponent``.

    The result is not re-randomised; :func:`add_mantissas` does that before it is sent anywhere.
    """
    x = np.asarray(x_mantissas)
    if x.ndim != 2 or x.shape[0] != len(vector):
        raise ValueError(f"X has shape {x.shape}, the vector has {len(vector)} elements")
    if x.dtype.kind != "i":
        raise TypeError("X must hold integer mantissas (see encode)")
    nsq = mpz(vector.public_key.nsquare)
    cts = vector.ciphertexts
    inverse = dict.fromkeys(np.flatnonzero((x < 0).any(axis=1)).tolist())
    for i in inverse:
        inverse[i] = gmpy2.invert(cts[i], nsq)
    out = []
    for j in range(x.shape[1]):
        col = x[:, j]
        bases = [inverse[i] if neg else cts[i] for i, neg in enumerate((col < 0).tolist())]
        out.append(_multi_exp(bases, np.abs(col), nsq))
    return EncryptedVector(vector.public_key, out, vector.exponent + x_exponent)


def _window(count: int, bits: int) -> int:
    """The bucket width that minimises Pippenger's multiplication count."""
    return min(range(1, 17), key=lambda w: -(-bits // w) * (count + 2 ** (w + 1)))


def _multi_exp(bases: list[Any], exps: np.ndarray, modulus: Any) -> Any:
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
