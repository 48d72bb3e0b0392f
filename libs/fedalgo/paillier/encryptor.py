"""Encryption: ``c = (1 + n*m) * r mod n^2``, where r is a random n-th residue (the obfuscator).

g = n + 1 makes g^m = 1 + n*m, so all the cost is in r. Two ways to draw it:

``randomness="djn"`` (default; Damgård-Jurik-Nielsen, as in SecretFlow HEU): once per encryptor,
pick a random unit x, set h = -x^2 mod n and h_s = h^n mod n^2, and precompute a fixed-base table
of h_s^(d * 2^(11 i)) (:class:`~fedalgo.paillier.montgomery.FixedBaseTable`, whose products run
in C). Each obfuscator is then h_s^a for a fresh uniform a of at least k/2 bits (k
the key size, rounded up to whole 11-bit windows), which costs k/22 table multiplications instead of
a k-bit exponentiation. Security:
semantic security rests on the decisional composite residuosity assumption, as for Paillier, plus
the assumption DJN state for this variant: that h^a with a short uniform a (k/2 bits) is
indistinguishable from a uniform element of the group <h> of squares (which holds if factoring n,
equivalently finding the order of <h>, is hard; a k/2-bit exponent keeps the best known
attacks, which cost about 2^(k/4), above the strength of the modulus itself). Each encryptor
draws its own x from ``secrets``, so a peer's key (just n) cannot bias it. The assumption is about
parties who cannot factor n: to re-randomise a result for the key holder, use "standard".

``randomness="standard"``: r = t^n mod n^2 for a uniform t, Paillier's original and assumption-free
choice; costs one full k-bit exponentiation mod n^2 per ciphertext. Use it if the DJN assumption is
not acceptable.

With the private key both modes compute mod p^2 and q^2 and recombine by CRT (the distribution is
the same; half-size moduli make each multiplication about 3x cheaper). Long vectors can be spread
over a :class:`~fedalgo.computing.Computing` engine; its workers rebuild the encryptor from
:meth:`Encryptor.spec`, which then includes the private key (they are this party's processes).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

import gmpy2
import numpy as np

from fedalgo.paillier._parallel import powmod_base_list
from fedalgo.paillier.encoding import encode
from fedalgo.paillier.keys import PrivateKey, PublicKey
from fedalgo.paillier.montgomery import FixedBaseTable
from fedalgo.paillier.vector import EncryptedVector

if TYPE_CHECKING:
    from fedalgo.computing.base import Computing

Randomness = Literal["djn", "standard"]
RANDOMNESS: tuple[Randomness, ...] = ("djn", "standard")
EncryptorSpec = tuple[int, int | None, int | None, str, int | None]
_BATCH = 4096  # obfuscators drawn per batch of random digits, to bound their memory
mpz = gmpy2.mpz


def _random_unit(modulus: int, prime_factors: Sequence[int]) -> Any:
    while True:
        t = mpz(secrets.randbelow(modulus - 1) + 1)
        if all(t % f for f in prime_factors):
            return t


class Encryptor:
    """Encrypts under one public key; faster with the private key (CRT). See the module doc."""

    def __init__(
        self,
        public_key: PublicKey,
        *,
        private_key: PrivateKey | None = None,
        randomness: Randomness = "djn",
        h_s: int | None = None,
    ) -> None:
        if randomness not in RANDOMNESS:
            raise ValueError(f"randomness must be one of {RANDOMNESS}, got {randomness!r}")
        if private_key is not None and private_key.public_key != public_key:
            raise ValueError("the private key does not belong to the public key")
        self.public_key = public_key
        self.private_key = private_key
        self.randomness = randomness
        n = public_key.n_mpz
        nsq = public_key.nsquare
        self.h_s: int | None = None
        if private_key is not None:
            p, q = mpz(private_key.p), mpz(private_key.q)
            self._psq, self._qsq = p * p, q * q
            self._qsq_inv = gmpy2.invert(self._qsq, self._psq)
        if randomness == "djn":
            if h_s is None:
                x = _random_unit(public_key.n, [])
                h_s = int(gmpy2.powmod(-x * x % n, n, nsq))
            elif not 1 < h_s < nsq or gmpy2.gcd(h_s, n) != 1:
                raise ValueError("h_s must be a unit modulo n^2")
            self.h_s = h_s

    @cached_property
    def _tables(self) -> list[FixedBaseTable]:
        """DJN's fixed-base tables, built on first use (a pool's parent may never encrypt)."""
        assert self.h_s is not None
        bits = self.public_key.key_bits // 2
        if self.private_key is None:
            return [FixedBaseTable(self.h_s, self.public_key.nsquare, bits)]
        return [FixedBaseTable(self.h_s, m, bits) for m in (self._psq, self._qsq)]

    def spec(self) -> EncryptorSpec:
        """What a pool worker needs to rebuild this encryptor (includes the private key)."""
        sk = self.private_key
        return (
            self.public_key.n,
            None if sk is None else sk.p,
            None if sk is None else sk.q,
            self.randomness,
            self.h_s,
        )

    @classmethod
    def from_spec(cls, spec: EncryptorSpec) -> Encryptor:
        n, p, q, randomness, h_s = spec
        public_key = PublicKey(n)
        private_key = None if p is None or q is None else PrivateKey(public_key, p, q)
        if randomness not in RANDOMNESS:
            raise ValueError(f"bad randomness {randomness!r}")
        mode: Randomness = "djn" if randomness == "djn" else "standard"
        return cls(public_key, private_key=private_key, randomness=mode, h_s=h_s)

    def obfuscators(self, count: int) -> list[Any]:
        """``count`` fresh random n-th residues modulo n^2."""
        n, nsq = self.public_key.n_mpz, self.public_key.nsquare
        if self.randomness == "djn":
            return [r for i in range(0, count, _BATCH) for r in self._djn(min(_BATCH, count - i))]
        if self.private_key is None:
            ts = [_random_unit(self.public_key.n, []) for _ in range(count)]
            return powmod_base_list(ts, n, nsq)
        # t^p is uniform among the n-th residues mod p^2 for t uniform in (Z/p^2)*; same for q.
        p, q = mpz(self.private_key.p), mpz(self.private_key.q)
        rp = powmod_base_list(
            [_random_unit(int(self._psq), [p]) for _ in range(count)], p, self._psq
        )
        rq = powmod_base_list(
            [_random_unit(int(self._qsq), [q]) for _ in range(count)], q, self._qsq
        )
        return self._crt(list(zip(rp, rq, strict=True)))

    def _djn(self, count: int) -> list[Any]:
        tables = self._tables
        exponents = tables[0].random_exponents(count)
        if self.private_key is None:
            return tables[0].powers(exponents)
        tp, tq = tables
        return self._crt(list(zip(tp.powers(exponents), tq.powers(exponents), strict=True)))

    def _crt(self, pairs: list[tuple[Any, Any]]) -> list[Any]:
        psq, qsq, qsq_inv = self._psq, self._qsq, self._qsq_inv
        return [b + qsq * ((a - b) * qsq_inv % psq) for a, b in pairs]

    def encrypt_raw(self, plaintexts: Sequence[int]) -> list[Any]:
        """Ciphertexts of integer plaintexts (taken mod n, so negatives wrap), in this process."""
        n, nsq = self.public_key.n_mpz, self.public_key.nsquare
        rs = self.obfuscators(len(plaintexts))
        return [(1 + n * (int(m) % n)) * r % nsq for m, r in zip(plaintexts, rs, strict=True)]

    def encrypt_ints(
        self, mantissas: Sequence[int], exponent: int = 0, *, pool: Computing | None = None
    ) -> EncryptedVector:
        """Encrypt signed integers (any size up to ``max_int``) as a vector at ``exponent``."""
        max_int = self.public_key.max_int
        if any(abs(int(m)) > max_int for m in mantissas):
            raise OverflowError("a plaintext is larger than the key's max_int")
        if pool is not None and pool.splits(len(mantissas)):
            cts = pool.encrypt_raw(self.spec(), [int(m) for m in mantissas])
        else:
            cts = self.encrypt_raw(mantissas)
        return EncryptedVector(self.public_key, cts, exponent)

    def encrypt_to_wire(
        self, mantissas: Sequence[int], exponent: int = 0, *, pool: Computing | None = None
    ) -> dict[str, Any]:
        """``encrypt_ints(...).to_wire()``, the same bytes once encoded, without holding the
        ciphertexts as ints: the workers return them encoded (:meth:`Computing.encrypt_encoded`;
        what a party does that encrypts only to send)."""
        if pool is None or not pool.splits(len(mantissas)):
            return self.encrypt_ints(mantissas, exponent).to_wire()
        max_int = self.public_key.max_int
        if any(abs(int(m)) > max_int for m in mantissas):
            raise OverflowError("a plaintext is larger than the key's max_int")
        cts = pool.encrypt_encoded(self.spec(), [int(m) for m in mantissas])
        return {"ciphertexts": cts, "exponent": exponent}

    def encrypt(
        self, values: np.ndarray, exponent: int, *, pool: Computing | None = None
    ) -> EncryptedVector:
        """Encrypt a float vector at fixed precision ``16**exponent`` (see :func:`encode`)."""
        flat = np.asarray(values, dtype=np.float64).reshape(-1)
        return self.encrypt_ints(encode(flat, exponent).tolist(), exponent, pool=pool)

    def rerandomise(self, vector: EncryptedVector) -> EncryptedVector:
        """The same plaintexts under fresh randomness, so nothing shows how they were computed."""
        if vector.public_key != self.public_key:
            raise ValueError("the vector is encrypted under another key")
        nsq = self.public_key.nsquare
        rs = self.obfuscators(len(vector))
        cts = [c * r % nsq for c, r in zip(vector.ciphertexts, rs, strict=True)]
        return EncryptedVector(self.public_key, cts, vector.exponent)
