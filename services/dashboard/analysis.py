"""What the charts show, derived from the evaluation step's curve metrics (pure functions).

The evaluation step reports ``roc`` (``fpr``, ``tpr``, ``thresholds``, best score first) and
``ks_curve``; from those alone this module finds the KS point and a confusion matrix *as rates*
at any threshold. Lift and gain also need the share of positives, which no metric carries
directly: it is taken from a ``confusion`` metric when one exists, else solved from the
``precision`` and ``recall`` reported at the evaluation threshold and the ROC's false-positive
rate there (marked as estimated).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

ROC: Final = "roc"
KS_CURVE: Final = "ks_curve"
IMPORTANCE_NAMES: Final = ("feature_importance", "importance")
DEFAULT_THRESHOLD: Final = 0.5


@dataclass(frozen=True)
class Roc:
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]  # descending; may be empty if the producer sent none

    @classmethod
    def parse(cls, value: Any) -> Roc | None:
        """A ROC from a metric value, or ``None`` if it is not a usable one."""
        if not isinstance(value, Mapping):
            return None
        fpr, tpr = _floats(value.get("fpr")), _floats(value.get("tpr"))
        if fpr is None or tpr is None or len(fpr) != len(tpr) or len(fpr) < 2:
            return None
        thresholds = _floats(value.get("thresholds")) or []
        if len(thresholds) != len(fpr):
            thresholds = []
        return cls(fpr, tpr, thresholds)


@dataclass(frozen=True)
class KsPoint:
    ks: float
    threshold: float | None
    fpr: float
    tpr: float


@dataclass(frozen=True)
class Confusion:
    """Rates per actual class at a threshold; counts when the class sizes are known."""

    threshold: float
    tpr: float
    fpr: float
    counts: dict[str, float] | None  # tp, fp, tn, fn (expected counts, from the rates)


@dataclass(frozen=True)
class GainPoint:
    depth: float  # share of the population scored at or above the threshold
    gain: float  # share of all positives captured (the TPR)
    lift: float | None  # gain / depth


def _floats(value: Any) -> list[float] | None:
    if not isinstance(value, list):
        return None
    out: list[float] = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return None
        out.append(float(v))
    return out


def ks_point(roc: Roc) -> KsPoint:
    """Where TPR - FPR is largest."""
    best = max(range(len(roc.fpr)), key=lambda i: roc.tpr[i] - roc.fpr[i])
    threshold = roc.thresholds[best] if roc.thresholds else None
    return KsPoint(roc.tpr[best] - roc.fpr[best], threshold, roc.fpr[best], roc.tpr[best])


def rates_at(roc: Roc, threshold: float) -> tuple[float, float] | None:
    """(FPR, TPR) of predicting 1 for scores ≥ ``threshold``, from the nearest ROC point at or
    above it (thresholds descend, so that point predicts 1 for no score below ``threshold``)."""
    if not roc.thresholds:
        return None
    fpr, tpr = 0.0, 0.0
    for t, f, p in zip(roc.thresholds, roc.fpr, roc.tpr, strict=True):
        if t < threshold:
            break
        fpr, tpr = f, p
    return fpr, tpr


def positive_share(
    roc: Roc, scalars: Mapping[str, float | None], confusion: Any
) -> tuple[float, bool] | None:
    """The share of positives and whether it is exact (from ``confusion`` counts)."""
    if isinstance(confusion, Mapping):
        counts = {k: confusion.get(k) for k in ("tp", "fp", "tn", "fn")}
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in counts.values()):
            total = sum(float(v) for v in counts.values() if v is not None)
            if total > 0:
                return (float(counts["tp"] or 0) + float(counts["fn"] or 0)) / total, True
    precision, recall = scalars.get("precision"), scalars.get("recall")
    threshold = scalars.get("threshold")
    rates = rates_at(roc, DEFAULT_THRESHOLD if threshold is None else threshold)
    if precision is None or recall is None or rates is None or not 0 < precision < 1:
        return None
    fpr = rates[0]
    # precision = πr / (πr + (1 - π)f)  ⇒  π = pf / (r(1 - p) + pf)
    denominator = recall * (1 - precision) + precision * fpr
    if denominator <= 0:
        return None
    share = precision * fpr / denominator
    return (share, False) if 0 < share < 1 else None


def confusion_at(
    roc: Roc, threshold: float, *, samples: float | None, share: float | None
) -> Confusion | None:
    rates = rates_at(roc, threshold)
    if rates is None:
        return None
    fpr, tpr = rates
    counts = None
    if samples is not None and share is not None:
        pos, neg = samples * share, samples * (1 - share)
        counts = {"tp": tpr * pos, "fn": (1 - tpr) * pos, "fp": fpr * neg, "tn": (1 - fpr) * neg}
    return Confusion(threshold, tpr, fpr, counts)


def gains(roc: Roc, share: float) -> list[GainPoint]:
    """Cumulative gain and lift per ROC point, for a population with ``share`` positives."""
    points = []
    for fpr, tpr in zip(roc.fpr, roc.tpr, strict=True):
        depth = share * tpr + (1 - share) * fpr
        points.append(GainPoint(depth, tpr, tpr / depth if depth > 0 else None))
    return points


def importance(value: Any) -> list[tuple[str, float]] | None:
    """Feature importances, largest magnitude first, from ``{name: weight}`` or
    ``{"features": [...], "importance": [...]}``; ``None`` if the value is neither."""
    if not isinstance(value, Mapping):
        return None
    names, weights = value.get("features"), _floats(value.get("importance"))
    if isinstance(names, list) and weights is not None and len(names) == len(weights):
        pairs = [(str(n), w) for n, w in zip(names, weights, strict=True)]
    else:
        pairs = []
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return None
            pairs.append((str(k), float(v)))
    return sorted(pairs, key=lambda p: -abs(p[1])) or None


def downsample(points: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` evenly spaced points, keeping both ends."""
    n = len(points)
    if n <= limit:
        return list(points)
    step = (n - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]
