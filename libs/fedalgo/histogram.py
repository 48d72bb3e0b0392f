"""Histograms of encrypted values per bin, and the packing that keeps them few and small.

Used by ``binning`` (encrypted labels) and ``hetero_secureboost`` (encrypted gradient/hessian
pairs). The key holder encrypts one ciphertext per row; the other party multiplies the
ciphertexts of the rows that fall in each bin (one modular multiplication per row and column:
the homomorphic sum), then *compresses* the bin sums, Horner-style, into as few ciphertexts as
the plaintext space holds (``c_0 * c_1^(2^w) * c_2^(2^2w) ...`` encrypts sum_k m_k 2^(k w)), so the
key holder decrypts one ciphertext per dozen bins instead of one per bin. Slots are signed and
recovered with borrows (:func:`fedalgo.paillier.unpack`), so negative gradients need no offset.

This module only does arithmetic; re-randomising before anything goes back to the key holder is
the caller's job (see the threat model of each component).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import gmpy2
import numpy as np

from fedalgo import paillier
from fedalgo.errors import ProtocolError

mpz = gmpy2.mpz


def bin_sums(
    ciphertexts: Sequence[Any], flat_bins: np.ndarray, total_bins: int, nsquare: Any
) -> list[Any]:
    """Per flat bin, the product mod n^2 of the ciphertexts of the rows in it.

    ``flat_bins`` is (rows, columns): row i's ciphertext is ``ciphertexts[i]`` and it lands in
    bin ``flat_bins[i, j]`` of every column j. An empty bin is 1 (an encryption of 0 without
    randomness: the caller re-randomises).
    """
    if flat_bins.shape[0] != len(ciphertexts):
        raise ValueError(f"{flat_bins.shape[0]} rows of bins but {len(ciphertexts)} ciphertexts")
    acc: list[Any] = [mpz(1)] * total_bins
    if flat_bins.size == 0:
        return acc
    # Column by column, rows sorted by bin: each bin's product is one run over a contiguous
    # slice, which keeps the inner loop to a multiply and a reduction.
    for column in flat_bins.T:
        order = np.argsort(column, kind="stable")
        ordered = column[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        ends = np.r_[starts[1:], len(ordered)]
        order_list = order.tolist()
        for start, end, b in zip(
            starts.tolist(), ends.tolist(), ordered[starts].tolist(), strict=True
        ):
            product = ciphertexts[order_list[start]]
            for i in order_list[start + 1 : end]:
                product = product * ciphertexts[i] % nsquare
            acc[b] = product
    return acc


class HistogramPool:
    """:func:`bin_sums` over worker processes, each folding a share of the rows.

    Multiplying ciphertexts holds the GIL, so only processes use more than one core. Workers are
    spawned on first use (at most ``max_workers``, default the number of cores) and stopped by
    :meth:`close` or on leaving the ``with`` block; fewer than ``min_rows`` rows stay in this
    process, where they are cheaper than the round trip.
    """

    def __init__(self, max_workers: int | None = None, *, min_rows: int = 4096) -> None:
        cores = os.cpu_count() or 1
        self.max_workers = max(1, min(cores, cores if max_workers is None else max_workers))
        self.min_rows = min_rows
        self._executor: Executor | None = None

    def __enter__(self) -> HistogramPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers. Idempotent."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def bin_sums(
        self, ciphertexts: Sequence[Any], flat_bins: np.ndarray, total_bins: int, nsquare: Any
    ) -> list[Any]:
        """What :func:`bin_sums` returns, computed on the workers for long inputs."""
        rows = len(ciphertexts)
        if self.max_workers < 2 or rows < self.min_rows:
            return bin_sums(ciphertexts, flat_bins, total_bins, nsquare)
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.max_workers, mp_context=multiprocessing.get_context("spawn")
            )
        size = -(-rows // self.max_workers)
        futures = [
            self._executor.submit(
                bin_sums,
                list(ciphertexts[i : i + size]),
                flat_bins[i : i + size],
                total_bins,
                nsquare,
            )
            for i in range(0, rows, size)
        ]
        parts = [f.result() for f in futures]
        acc = parts[0]
        for part in parts[1:]:
            acc = [a * b % nsquare for a, b in zip(acc, part, strict=True)]
        return acc


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
