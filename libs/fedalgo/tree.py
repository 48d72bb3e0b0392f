"""Gradient-boosted trees on binned features: split search, tree structure, traversal.

Plain numpy, no encryption and no federation: ``hetero_secureboost`` runs the split search on the
guest over histograms (its own, and the hosts' after decryption), and these trees are what its
model stores. Splits use the second-order gain of XGBoost:

    gain = G_L^2 / (H_L + lambda) + G_R^2 / (H_R + lambda) - G^2 / (H + lambda)

and a leaf's weight is ``-G / (H + lambda)`` (times the learning rate).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SplitCandidate:
    """The best split of one node within one block of features (one party's)."""

    gain: float
    feature: int  # index within the block
    bin: int  # rows with bin <= this go left
    left_g: float
    left_h: float


def best_split(
    g_hist: np.ndarray,
    h_hist: np.ndarray,
    bin_counts: list[int],
    *,
    reg_lambda: float,
    min_child_weight: float,
    min_split_gain: float,
) -> SplitCandidate | None:
    """The best split over the flat histograms of a block of features, or None if none is valid.

    ``g_hist``/``h_hist`` are the per-bin sums of the node's rows, features laid end to end with
    ``bin_counts[j]`` bins each (the layout of :class:`fedalgo.bin_edges.Binning`).
    """
    best: SplitCandidate | None = None
    start = 0
    for j, count in enumerate(bin_counts):
        g = g_hist[start : start + count]
        h = h_hist[start : start + count]
        start += count
        if count < 2:
            continue
        g_total, h_total = float(g.sum()), float(h.sum())
        gl = np.cumsum(g)[:-1]
        hl = np.cumsum(h)[:-1]
        gr, hr = g_total - gl, h_total - hl
        valid = (hl >= min_child_weight) & (hr >= min_child_weight)
        # A split must put rows on both sides; empty bins have h == 0 so a zero-weight side is
        # caught by hl/hr > 0 even when min_child_weight is 0.
        valid &= (hl > 0) & (hr > 0)
        if not valid.any():
            continue
        parent = g_total**2 / (h_total + reg_lambda)
        gains = gl**2 / (hl + reg_lambda) + gr**2 / (hr + reg_lambda) - parent
        gains = np.where(valid, gains, -np.inf)
        b = int(np.argmax(gains))
        gain = float(gains[b])
        if gain > min_split_gain and (best is None or gain > best.gain):
            best = SplitCandidate(gain, j, b, float(gl[b]), float(hl[b]))
    return best


def leaf_weight(g: float, h: float, reg_lambda: float) -> float:
    return -g / (h + reg_lambda)


@dataclass
class Node:
    """A tree node: a leaf with a ``weight``, or a split owned by ``party``.

    A guest split stores its feature index and threshold (``x <= threshold`` goes left); a host
    split stores only the host's party id, an anonymous feature name and ``split_id``, which the
    host resolves to its own feature and threshold.
    """

    id: int
    weight: float = 0.0
    left: int = -1
    right: int = -1
    party: str = ""
    feature: str = ""
    feature_index: int = -1
    threshold: float = 0.0
    split_id: str = ""
    gain: float = 0.0

    @property
    def is_leaf(self) -> bool:
        return self.left < 0

    def to_json(self) -> dict[str, Any]:
        if self.is_leaf:
            return {"id": self.id, "weight": self.weight}
        out: dict[str, Any] = {
            "id": self.id,
            "left": self.left,
            "right": self.right,
            "party": self.party,
            "feature": self.feature,
            "gain": self.gain,
        }
        if self.split_id:
            out["split_id"] = self.split_id
        else:
            out["feature_index"] = self.feature_index
            out["threshold"] = self.threshold
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        return cls(**data)


@dataclass
class Tree:
    nodes: list[Node] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [n.to_json() for n in self.nodes]

    @classmethod
    def from_json(cls, data: list[dict[str, Any]]) -> Tree:
        return cls([Node.from_json(d) for d in data])


GoesLeft = Callable[[Node, np.ndarray], np.ndarray]


def leaf_weights(tree: Tree, rows: int, goes_left: GoesLeft) -> np.ndarray:
    """Each row's leaf weight; ``goes_left(node, row_indices)`` decides each split."""
    position = np.zeros(rows, dtype=np.int64)
    out = np.zeros(rows)
    by_id = {n.id: n for n in tree.nodes}
    frontier = [0] if tree.nodes else []
    while frontier:
        next_frontier = []
        for node_id in frontier:
            node = by_id[node_id]
            members = np.flatnonzero(position == node_id)
            if node.is_leaf:
                out[members] = node.weight
                continue
            left = goes_left(node, members)
            position[members[left]] = node.left
            position[members[~left]] = node.right
            next_frontier += [node.left, node.right]
        frontier = next_frontier
    return out
