"""Binning a party's own columns (quantile or equal width) and the WOE/IV of the bins.

A column's bins are given by its sorted, distinct *split points* s_0 < s_1 < ... < s_{k-1}:
bin b holds the values with ``s_{b-1} < x <= s_b`` (bin 0 everything ``<= s_0``, bin k everything
above ``s_{k-1}``), so "bin <= b" is exactly "x <= s_b", the test a tree split stores. Pure numpy,
no federation: the ``binning`` and ``hetero_secureboost`` components both bin with these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fedalgo.errors import ArgumentError, DataError

if TYPE_CHECKING:
    from fedalgo.computing import Computing

METHODS = ("quantile", "equal-width")
# A bin without events (or without non-events) would make its WOE infinite; as FATE does, such a
# bin counts half an event (non-event) instead.
WOE_ADJUSTMENT = 0.5


def column_splits(column: np.ndarray, bins: int, method: str) -> np.ndarray:
    """The split points of one column: at most ``bins - 1`` distinct values."""
    if column.size == 0:
        raise DataError("cannot bin an empty column")
    if method == "quantile":
        points = np.quantile(column, np.arange(1, bins) / bins)
    elif method == "equal-width":
        low, high = float(column.min()), float(column.max())
        points = low + (high - low) * np.arange(1, bins) / bins
    else:
        raise ArgumentError(f"unknown binning method {method!r}")
    # Split points at or above the maximum would leave an empty last bin.
    points = np.unique(points)
    return points[points < column.max()]


@dataclass(frozen=True)
class Binning:
    """The split points of every column and the bin index of every value."""

    splits: list[np.ndarray]
    bins: np.ndarray  # (rows, columns) int32: the bin of each value

    @property
    def bin_counts(self) -> list[int]:
        """How many bins each column has (its split points plus one)."""
        return [len(s) + 1 for s in self.splits]

    @property
    def offsets(self) -> np.ndarray:
        """Where each column's bins start in one flat, all-columns bin numbering."""
        return np.concatenate([[0], np.cumsum(self.bin_counts)[:-1]]).astype(np.int64)

    def flat(self) -> np.ndarray:
        """(rows, columns) int64: each value's bin in the flat numbering (see :attr:`offsets`)."""
        return self.bins.astype(np.int64) + self.offsets[None, :]


def fit_binning(
    x: np.ndarray, bins: int, method: str, computing: Computing | None = None
) -> Binning:
    """Bin every column of ``x`` with ``bins`` bins at most; ``computing``'s workers take a
    share of the columns each (every column is binned on its own, so the result is the same)."""
    columns = np.ascontiguousarray(x.T)
    if computing is not None and computing.splits(x.size):
        parts = computing.map_chunks(_bin_columns, [columns], bins, method)
    else:
        parts = [_bin_columns(columns, bins, method)]
    splits = [s for part_splits, _ in parts for s in part_splits]
    binned = np.concatenate([b for _, b in parts], axis=0)
    return Binning(splits, np.ascontiguousarray(binned.T))


def _bin_columns(
    columns: np.ndarray, bins: int, method: str
) -> tuple[list[np.ndarray], np.ndarray]:
    """The split points of each row of ``columns`` (a column of the data) and its bin indices."""
    splits = [column_splits(c, bins, method) for c in columns]
    out = np.empty(columns.shape, dtype=np.int32)
    for j, s in enumerate(splits):
        out[j] = np.searchsorted(s, columns[j], side="left")
    return splits, out


def apply_splits(x: np.ndarray, splits: list[np.ndarray]) -> np.ndarray:
    """The bin index of each value of ``x`` (columns binned by their own split points)."""
    if x.shape[1] != len(splits):
        raise DataError(f"{x.shape[1]} columns but split points for {len(splits)}")
    out = np.empty(x.shape, dtype=np.int32)
    for j, s in enumerate(splits):
        out[:, j] = np.searchsorted(s, x[:, j], side="left")
    return out


@dataclass(frozen=True)
class WoeIv:
    """Weight of evidence of each bin and the information value of the column."""

    woe: list[float]
    iv: float


def woe_iv(events: np.ndarray, counts: np.ndarray, total_events: int, total: int) -> WoeIv:
    """WOE_b = ln(event share / non-event share), IV = sum_b (event - non-event share) * WOE_b."""
    events = np.asarray(events, dtype=np.float64)
    non_events = np.asarray(counts, dtype=np.float64) - events
    total_non = total - total_events
    if total_events <= 0 or total_non <= 0:
        raise DataError("WOE/IV needs both classes in the labels")
    if (events < 0).any() or (non_events < 0).any():
        raise DataError("a bin has more events than rows")
    empty = (events == 0) | (non_events == 0)
    ev = np.where(empty, events + WOE_ADJUSTMENT, events) / total_events
    ne = np.where(empty, non_events + WOE_ADJUSTMENT, non_events) / total_non
    woe = np.log(ev / ne)
    iv = float(((ev - ne) * woe).sum())
    return WoeIv([float(w) for w in woe], iv if math.isfinite(iv) else 0.0)
