"""Histograms of encrypted values per bin, and the packing that keeps them few and small.

Used by ``binning`` (encrypted labels) and ``hetero_secureboost`` (encrypted gradient/hessian
pairs). The key holder encrypts one ciphertext per row; the other party multiplies the
ciphertexts of the rows that fall in each bin (one modular multiplication per row and column:
the homomorphic sum, in C: :func:`fedalgo.paillier.montgomery.bin_products`), then *compresses*
the bin sums, Horner-style, into as few ciphertexts as the plaintext space holds
(``c_0 * c_1^(2^w) * c_2^(2^2w) ...`` encrypts sum_k m_k 2^(k w)), so the key holder decrypts one
ciphertext per dozen bins instead of one per bin. Slots are signed and
recovered with borrows (:func:`fedalgo.paillier.unpack`), so negative gradients need no offset.

This module only does arithmetic; re-randomising before anything goes back to the key holder is
the caller's job (see the threat model of each component).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gmpy2
import numpy as np

from fedalgo import paillier
from fedalgo.errors import ProtocolError
from fedalgo.paillier.montgomery import Modulus, bin_products
from fedcore.codec import IntArray

if TYPE_CHECKING:
    from fedalgo.computing import Computing, Rows

mpz = gmpy2.mpz


def bin_sums(
    ciphertexts: Sequence[Any],
    flat_bins: np.ndarray,
    total_bins: int,
    nsquare: Any,
    computing: Computing | None = None,
) -> list[Any]:
    """Per flat bin, the product mod n^2 of the ciphertexts of the rows in it.

    ``flat_bins`` is (rows, columns): row i's ciphertext is ``ciphertexts[i]`` and it lands in
    bin ``flat_bins[i, j]`` of every column j. An empty bin is 1 (an encryption of 0 without
    randomness: the caller re-randomises). Long inputs are folded by ``computing``'s workers, a
    share of the rows each, and their partial products multiplied together.
    """
    if flat_bins.shape[0] != len(ciphertexts):
        raise ValueError(f"{flat_bins.shape[0]} rows of bins but {len(ciphertexts)} ciphertexts")
    modulus = Modulus(nsquare)
    values = modulus.limbs_of(ciphertexts)
    if computing is not None and computing.splits(len(ciphertexts)):
        return computing.bin_sums(values, flat_bins, total_bins, nsquare)
    return modulus.residues_of(bin_products(values, flat_bins, total_bins, modulus))


def _ints(ciphertexts: Sequence[Any] | IntArray) -> Sequence[Any]:
    return ciphertexts.ints() if isinstance(ciphertexts, IntArray) else ciphertexts


def part_product(
    rows: np.ndarray, ciphertexts: Sequence[Any] | IntArray, flat_bins: np.ndarray, n: int
) -> int | str:
    """One partition of a peer's ciphertexts (:func:`limb_rows`' input), checked where it is
    decoded (:func:`fedalgo.paillier.product_or_error`)."""
    return paillier.product_or_error(_ints(ciphertexts), n)


def limb_rows(
    rows: np.ndarray, ciphertexts: Sequence[Any] | IntArray, flat_bins: np.ndarray, nsquare: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One partition of :func:`node_bin_sums`' rows: its ciphertexts (ints, or still encoded as
    received) as limbs (half the memory of Python ints, and what the C loops read)."""
    return rows, Modulus(nsquare).limbs_of(_ints(ciphertexts)), flat_bins


def _node_products(
    rows: np.ndarray,
    limbs: np.ndarray,
    flat_bins: np.ndarray,
    node_of_row: np.ndarray,
    nodes: list[int],
    total_bins: int,
    nsquare: Any,
) -> list[np.ndarray]:
    modulus = Modulus(nsquare)
    where = node_of_row[rows]
    return [
        bin_products(limbs[where == node], flat_bins[where == node], total_bins, modulus)
        for node in nodes
    ]


def _mul_node_products(a: list[np.ndarray], b: list[np.ndarray], nsquare: Any) -> list[np.ndarray]:
    modulus = Modulus(nsquare)
    out = []
    for x, y in zip(a, b, strict=True):
        products = [
            u * v % nsquare
            for u, v in zip(modulus.residues_of(x), modulus.residues_of(y), strict=True)
        ]
        out.append(modulus.limbs_of(products))
    return out


def node_bin_sums(
    rows: Rows, node_of_row: np.ndarray, nodes: list[int], total_bins: int, nsquare: Any
) -> list[list[Any]]:
    """:func:`bin_sums` of each node's rows, over rows an engine holds (:func:`limb_rows`
    partitions: row numbers, limbs, flat bins): one pass over the partitions for every node of
    a level, their partial products multiplied by tree aggregation. The products are exact, so
    the result does not depend on how the rows are partitioned."""
    combine = functools.partial(_mul_node_products, nsquare=nsquare)
    merged = rows.reduce(_node_products, combine, node_of_row, nodes, total_bins, nsquare)
    modulus = Modulus(nsquare)
    return [modulus.residues_of(products) for products in merged]


def compress(
    ciphertexts: Sequence[Any], slot_bits: int, per_ciphertext: int, nsquare: Any
) -> list[Any]:
    """Fold groups of ``per_ciphertext`` ciphertexts into one: slot k at bit ``k * slot_bits``."""
    out = []
    shift = mpz(1) << slot_bits
    for start in range(0, len(ciphertexts), per_ciphertext):
        group = ciphertexts[start : start + per_ciphertext]
        acc = group[-1]
        for c in reversed(group[:-1]):
            acc = gmpy2.powmod(acc, shift, nsquare) * c % nsquare
        out.append(acc)
    return out


def decompress(
    plaintexts: Sequence[int], slot_bits: int, per_ciphertext: int, count: int
) -> list[int]:
    """The ``count`` signed slots that :func:`compress` folded into ``plaintexts``."""
    expected = -(-count // per_ciphertext)
    if len(plaintexts) != expected:
        raise ProtocolError(f"expected {expected} compressed values, got {len(plaintexts)}")
    out: list[int] = []
    for k, value in enumerate(plaintexts):
        n = min(per_ciphertext, count - k * per_ciphertext)
        try:
            out.extend(paillier.unpack(value, slot_bits, n))
        except OverflowError:
            raise ProtocolError("a compressed histogram overflowed its slots") from None
    return out


@dataclass(frozen=True)
class GradientPacking:
    """How the guest packs a row's gradient g and hessian h into one plaintext.

    Both are fixed point with ``precision_bits`` fractional bits: h' = round(h 2^P) in slot 0 and
    g' = round(g 2^P) in slot 1, each slot ``slot_bits`` wide, enough for the sum over every row
    (|g| <= 1, 0 <= h <= 1/4 for the logistic loss). A pair is ``2 * slot_bits`` wide and
    ``pairs_per_ciphertext`` pairs fit in one compressed plaintext. The default P = 24 rounds
    each value by at most 2^-25, far below what moves a split gain, and keeps slots narrow.
    """

    precision_bits: int
    slot_bits: int
    pairs_per_ciphertext: int

    @classmethod
    def for_rows(
        cls, rows: int, public_key: paillier.PublicKey, precision_bits: int = 24
    ) -> GradientPacking:
        slot_bits = precision_bits + max(rows, 1).bit_length() + 2  # sign bit and a spare bit
        pairs = paillier.slots_per_plaintext(public_key.max_int, 2 * slot_bits)
        if pairs < 1:
            raise ValueError("the key is too small for the gradient packing")
        return cls(precision_bits, slot_bits, pairs)

    def pack(self, g: np.ndarray, h: np.ndarray) -> list[int]:
        """One plaintext ``h' + g' * 2^slot_bits`` per row."""
        scale = float(2**self.precision_bits)
        gm = np.rint(np.clip(g, -1.0, 1.0) * scale).astype(np.int64).tolist()
        hm = np.rint(np.clip(h, 0.0, 1.0) * scale).astype(np.int64).tolist()
        s = self.slot_bits
        return [hh + (gg << s) for gg, hh in zip(gm, hm, strict=True)]

    def unpack_sums(self, plaintexts: Sequence[int], bins: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, H) per bin from the key holder's decryption of compressed bin sums."""
        slots = decompress(plaintexts, self.slot_bits, 2 * self.pairs_per_ciphertext, 2 * bins)
        scale = float(2**self.precision_bits)
        values = np.array([float(v) for v in slots]) / scale
        return values[1::2], values[0::2]

    def compress(self, sums: Sequence[Any], nsquare: Any) -> list[Any]:
        return compress(sums, 2 * self.slot_bits, self.pairs_per_ciphertext, nsquare)
