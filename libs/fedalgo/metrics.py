"""Binary-classification metrics on plain arrays: ROC, AUC, KS and threshold metrics.

Pure numpy, no federation: the ``evaluation`` component calls these on the guest's predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedalgo.errors import DataError


@dataclass(frozen=True)
class Curve:
    """ROC points at each distinct score, from (0, 0) (nothing positive) to (1, 1).

    A sample is predicted positive when ``score >= threshold``; the first threshold lies just
    above the highest score, so no sample is positive there.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray

    @property
    def ks(self) -> np.ndarray:
        return self.tpr - self.fpr


def _check(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    score = np.asarray(score, dtype=np.float64)
    if y.shape != score.shape or y.ndim != 1:
        raise DataError(f"labels {y.shape} and scores {score.shape} must be equal-length vectors")
    if not np.isin(y, (0, 1)).all():
        raise DataError("labels must be 0 or 1")
    if not np.isfinite(score).all():
        raise DataError("scores must be finite")
    if y.min(initial=1) == y.max(initial=0):
        raise DataError("ROC metrics need both classes among the labels")
    return y.astype(np.int64), score


def roc_curve(y: np.ndarray, score: np.ndarray) -> Curve:
    y, score = _check(y, score)
    order = np.argsort(-score, kind="mergesort")
    s, yy = score[order], y[order]
    # The last index of each run of equal scores: ties move together along the curve.
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(yy)[ends]
    fp = (ends + 1) - tp
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    thresholds = np.r_[np.nextafter(s[0], np.inf), s[ends]]
    return Curve(fpr=fpr, tpr=tpr, thresholds=thresholds)


def auc(curve: Curve) -> float:
    """Area under the ROC curve (trapezoids; ties count one half, as in Mann-Whitney U)."""
    return float(np.trapezoid(curve.tpr, curve.fpr))


def ks(curve: Curve) -> float:
    """Kolmogorov-Smirnov statistic: the largest gap between the classes' score CDFs."""
    return float(curve.ks.max())


@dataclass(frozen=True)
class ThresholdMetrics:
    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    tn: int
    fn: int


def at_threshold(y: np.ndarray, score: np.ndarray, threshold: float) -> ThresholdMetrics:
    """Confusion-matrix metrics predicting 1 when ``score >= threshold`` (0/0 counts as 0)."""
    y, score = np.asarray(y), np.asarray(score, dtype=np.float64)
    pred = score >= threshold
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = int(np.sum(~pred & (y == 1)))
    tn = int(np.sum(~pred & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ThresholdMetrics(
        accuracy=(tp + tn) / len(y) if len(y) else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


def downsample(count: int, max_points: int, keep: tuple[int, ...] = ()) -> np.ndarray:
    """At most ``max_points`` sorted indices into ``count`` points: both ends, ``keep``, and an
    even spread in between."""
    if count <= max_points:
        return np.arange(count)
    must = sorted({0, count - 1, *keep})
    spread = np.linspace(0, count - 1, max_points - len(must)).round().astype(np.int64)
    # |spread| + |must| == max_points, so the union never exceeds it.
    return np.unique(np.r_[spread, must])
