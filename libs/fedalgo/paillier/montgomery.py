"""Long runs of modular multiplication, in C: fixed-base exponentiation and products per bin.

Almost all of a vertical job's CPU goes to two loops: the key holder's encryption (DJN's h_s^a,
a product of one fixed-base table entry per exponent digit) and the other party's encrypted
histograms (per bin, the product of its rows' ciphertexts). Both run in the ``_montgomery``
extension: Montgomery multiplication on GMP's mpn layer, about two-thirds of the cost of gmpy2's
``a * b % m`` and with no interpreter round trip per multiplication, outside the GIL.

Residues cross into C as little-endian 64-bit limbs: :class:`Modulus` converts gmpy2 integers
to rows of a ``uint64`` array and back.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from typing import Any

import gmpy2
import numpy as np

from fedalgo.paillier import _montgomery

WINDOW_BITS = 11
mpz = gmpy2.mpz


class Modulus:
    """An odd modulus > 1, and the limb form of residues modulo it."""

    def __init__(self, value: Any) -> None:
        value = mpz(value)
        if value <= 1 or value % 2 == 0:
            raise ValueError("a Montgomery modulus must be odd and above 1")
        self.value = value
        self.limbs = math.ceil(value.bit_length() / 64)
        self.raw = value.to_bytes(8 * self.limbs, "little")

    def limbs_of(self, residues: Sequence[Any]) -> np.ndarray:
        """(len(residues), limbs) uint64: each residue (an int or mpz in [0, modulus))."""
        width = 8 * self.limbs
        raw = b"".join(r.to_bytes(width, "little") for r in residues)
        return np.frombuffer(raw, dtype="<u8").reshape(len(residues), self.limbs)

    def residues_of(self, limbs: bytes | np.ndarray) -> list[Any]:
        """The gmpy2 integers in rows of limbs (what the C functions return)."""
        raw = limbs.tobytes() if isinstance(limbs, np.ndarray) else limbs
        width, from_bytes = 8 * self.limbs, mpz.from_bytes
        return [from_bytes(raw[i : i + width], "little") for i in range(0, len(raw), width)]


class FixedBaseTable:
    """``base ** e mod modulus`` for exponents of up to ``exponent_bits`` bits, by table lookup.

    An exponent is given as its digits base 2^w (w = ``window_bits``, least significant first).
    Row i holds base^(d * 2^(w i)) for every digit d, so an exponent costs one multiplication
    per non-zero digit. Wider windows mean fewer multiplications but 2^w residues per row: at
    the default w = 11 a 1024-bit exponent takes 94 multiplications instead of the 128 of
    byte-wide windows, and the table 94 x 2048 residues (47 MiB modulo a 2048-bit p^2,
    94 MiB modulo a 4096-bit n^2; about 0.2 s and 0.6 s to build).
    """

    def __init__(
        self, base: Any, modulus: Any, exponent_bits: int, window_bits: int = WINDOW_BITS
    ) -> None:
        if not 1 <= window_bits <= 16:
            raise ValueError(f"window_bits must be in 1..16, got {window_bits}")
        self.modulus = Modulus(modulus)
        self.window_bits = window_bits
        self.digits = math.ceil(exponent_bits / window_bits)
        base_limbs = self.modulus.limbs_of([mpz(base) % self.modulus.value])
        self._table = _montgomery.fixed_base_table(
            base_limbs, self.modulus.raw, self.digits, window_bits
        )

    def powers(self, exponents: np.ndarray) -> list[Any]:
        """``base ** e mod modulus`` per row of ``exponents`` (its digits, least significant
        first; at most :attr:`digits` of them, each below 2^w)."""
        e = np.asarray(exponents)
        if e.ndim != 2 or e.shape[1] > self.digits:
            raise ValueError(f"exponents must be rows of at most {self.digits} digits")
        if e.size and (e.min() < 0 or e.max() >= 1 << self.window_bits):
            raise ValueError(f"digits must be in [0, 2^{self.window_bits})")
        padded = np.zeros((e.shape[0], self.digits), dtype=np.uint16)
        padded[:, : e.shape[1]] = e
        raw = _montgomery.fixed_base_pow(self._table, self.modulus.raw, self.window_bits, padded)
        return self.modulus.residues_of(raw)

    def random_exponents(self, count: int) -> np.ndarray:
        """``count`` exponents, as rows of digits, uniform in [0, 2^(w * digits)) (``secrets``)."""
        raw = np.frombuffer(secrets.token_bytes(2 * self.digits * count), dtype="<u2")
        digits = raw & np.uint16((1 << self.window_bits) - 1)
        return digits.reshape(count, self.digits)


def bin_products(
    values: np.ndarray, bins: np.ndarray, total_bins: int, modulus: Modulus
) -> np.ndarray:
    """(total_bins, limbs): per bin, the product of the ``values`` rows (limbs, one residue per
    row) that ``bins`` (rows x columns) puts in it, over every column; 1 for an empty bin."""
    bins = np.ascontiguousarray(bins, dtype=np.int64)
    if bins.ndim != 2 or bins.shape[0] != values.shape[0]:
        raise ValueError(f"bins must be {values.shape[0]} rows, got shape {bins.shape}")
    raw = _montgomery.bin_products(
        np.ascontiguousarray(values, dtype="<u8"), bins, bins.shape[1], total_bins, modulus.raw
    )
    return np.frombuffer(raw, dtype="<u8").reshape(total_bins, modulus.limbs)
