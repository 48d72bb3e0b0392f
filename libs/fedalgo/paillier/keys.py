"""Paillier keys (g = n + 1) on gmpy2: generation, CRT decryption of raw plaintexts.

Only 1024- and 2048-bit moduli are accepted: 2048 is the default and the recommendation, 1024 is
allowed for tests and demos with a logged warning, anything else is refused before any work.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal, get_args

import gmpy2

from fedalgo.paillier._parallel import powmod_base_list

logger = logging.getLogger("fedalgo.paillier")

KeyBits = Literal[1024, 2048]  # the sizes a component's key-bits parameter may take
KEY_BITS: Final[tuple[int, ...]] = get_args(KeyBits)
DEFAULT_KEY_BITS: Final[KeyBits] = 2048
mpz = gmpy2.mpz


def check_key_bits(key_bits: object) -> int:
    """``key_bits`` if it is a supported size; logs a warning for 1024, raises ValueError else."""
    if isinstance(key_bits, bool) or not isinstance(key_bits, int) or key_bits not in KEY_BITS:
        raise ValueError(f"Paillier key size must be 1024 or 2048 bits, got {key_bits!r}")
    if key_bits == 1024:
        logger.warning("1024-bit Paillier keys are below current recommendations; use 2048")
    return key_bits


@dataclass(frozen=True)
class PublicKey:
    """The modulus ``n``; plaintexts are integers mod n, read as signed in (-max_int, max_int]."""

    n: int

    def __post_init__(self) -> None:
        n = self.n
        if isinstance(n, bool) or not isinstance(n, int) or n.bit_length() not in KEY_BITS:
            raise ValueError("a Paillier modulus must be an integer of exactly 1024 or 2048 bits")
        if n % 2 == 0 or gmpy2.is_square(n) or gmpy2.is_prime(n):
            raise ValueError("not a Paillier modulus (it must be an odd product of two primes)")

    @property
    def key_bits(self) -> int:
        return self.n.bit_length()

    @cached_property
    def n_mpz(self) -> Any:
        return mpz(self.n)

    @cached_property
    def nsquare(self) -> Any:
        return mpz(self.n) * self.n

    @property
    def max_int(self) -> int:
        """The largest magnitude that decrypts unambiguously; a third of n, as in phe."""
        return self.n // 3 - 1


@dataclass(frozen=True)
class PrivateKey:
    """The factors of ``n``; decryption by the Chinese remainder theorem (two half-size powmods)."""

    public_key: PublicKey
    p: int = field(repr=False)
    q: int = field(repr=False)

    def __post_init__(self) -> None:
        if self.p * self.q != self.public_key.n or self.p == self.q:
            raise ValueError("p and q are not the two distinct factors of the public modulus")

    @cached_property
    def _crt(self) -> tuple[Any, ...]:
        p, q = mpz(self.p), mpz(self.q)
        psq, qsq = p * p, q * q
        n = mpz(self.public_key.n)
        # h_p = L_p(g^(p-1) mod p^2)^-1 mod p, with g = n + 1.
        hp = gmpy2.invert((gmpy2.powmod(n + 1, p - 1, psq) - 1) // p, p)
        hq = gmpy2.invert((gmpy2.powmod(n + 1, q - 1, qsq) - 1) // q, q)
        return p, q, psq, qsq, hp, hq, gmpy2.invert(p, q)

    def decrypt_raw(self, ciphertexts: Sequence[Any]) -> list[int]:
        """Plaintexts in [0, n), one per ciphertext."""
        p, q, psq, qsq, hp, hq, p_inv = self._crt
        cp = powmod_base_list(list(ciphertexts), p - 1, psq)
        cq = powmod_base_list(list(ciphertexts), q - 1, qsq)
        out = []
        for a, b in zip(cp, cq, strict=True):
            mp = (a - 1) // p * hp % p
            mq = (b - 1) // q * hq % q
            out.append(int(mp + (mq - mp) * p_inv % q * p))
        return out

    def decrypt_ints(self, ciphertexts: Sequence[Any]) -> list[int]:
        """Signed plaintexts; a value outside [-max_int, max_int] raises OverflowError.

        A result in the gap between max_int and n - max_int can only come from an overflow (a sum
        or product that wrapped around n), so it is refused rather than returned wrong. Overflows
        that wrap all the way into the valid range again cannot be detected; keep values bounded.
        """
        n, max_int = self.public_key.n, self.public_key.max_int
        out = []
        for plain in self.decrypt_raw(ciphertexts):
            if plain <= max_int:
                out.append(plain)
            elif plain >= n - max_int:
                out.append(plain - n)
            else:
                raise OverflowError("a decrypted value is outside the signed plaintext range")
        return out


def _prime(bits: int) -> Any:
    # The top two bits set make the product of two such primes exactly 2 * bits long.
    start = mpz(secrets.randbits(bits)) | (mpz(3) << (bits - 2)) | 1
    return gmpy2.next_prime(start)


def generate_keypair(key_bits: int = DEFAULT_KEY_BITS) -> tuple[PublicKey, PrivateKey]:
    """A fresh key pair; ``key_bits`` is 2048 (default) or 1024 (logs a warning)."""
    check_key_bits(key_bits)
    while True:
        p, q = _prime(key_bits // 2), _prime(key_bits // 2)
        n = p * q
        if p != q and n.bit_length() == key_bits:
            public_key = PublicKey(int(n))
            return public_key, PrivateKey(public_key, int(p), int(q))
