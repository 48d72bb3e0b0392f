"""``evaluation``: binary-classification metrics of the guest's predictions.

Arguments: :class:`EvaluationParams` (``threshold``, for accuracy/precision/recall/F1).
Curves are downsampled to at most 200 points, always keeping both ends and the KS point.

Threat model: runs at the guest alone, on its own predictions and labels; nothing is sent.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import Field

from fedalgo import metrics
from fedalgo.components.registry import component
from fedalgo.context import Context
from fedalgo.tables import LABEL_COLUMN, parse_labels, parse_numeric, read_table
from fedcore.params import Params

MAX_CURVE_POINTS = 200


def evaluate(y: np.ndarray, score: np.ndarray, *, threshold: float = 0.5) -> dict[str, Any]:
    """Every metric ``evaluation`` reports, as plain JSON-able data."""
    curve = metrics.roc_curve(y, score)
    best = int(np.argmax(curve.ks))
    keep = metrics.downsample(len(curve.fpr), MAX_CURVE_POINTS, keep=(best,))
    at = metrics.at_threshold(y, score, threshold)
    thresholds = curve.thresholds[keep]
    return {
        "auc": metrics.auc(curve),
        "ks": metrics.ks(curve),
        "accuracy": at.accuracy,
        "precision": at.precision,
        "recall": at.recall,
        "f1": at.f1,
        "threshold": threshold,
        "confusion": {"tp": at.tp, "fp": at.fp, "tn": at.tn, "fn": at.fn},
        "samples": len(y),
        "roc": {
            "fpr": curve.fpr[keep].tolist(),
            "tpr": curve.tpr[keep].tolist(),
            "thresholds": thresholds.tolist(),
        },
        "ks_curve": {
            "thresholds": thresholds.tolist(),
            "tpr": curve.tpr[keep].tolist(),
            "fpr": curve.fpr[keep].tolist(),
            "ks": curve.ks[keep].tolist(),
        },
    }


class EvaluationParams(Params):
    """``evaluation``'s arguments."""

    threshold: float = Field(
        0.5, ge=0, le=1, description="a score at or above it predicts 1 (accuracy, F1...)"
    )


@component(
    "evaluation",
    roles=("guest",),
    inputs=("predictions",),
    outputs=("metrics",),
    params=EvaluationParams,
)
def evaluation(ctx: Context) -> None:
    """AUC, KS, accuracy/precision/recall/F1 and the ROC and KS curves of ``predictions``."""
    threshold = ctx.params(EvaluationParams).threshold
    path = ctx.input("predictions")
    table = read_table(path)
    y = parse_labels(table, path, LABEL_COLUMN)
    score = parse_numeric(table, [table.column_index("score", path)], path)[:, 0]
    report = evaluate(y, score, threshold=threshold)
    ctx.output("metrics").write_text(json.dumps(report, indent=2))
    for name in ("auc", "ks", "accuracy", "precision", "recall", "f1"):
        ctx.metric(name, float(report[name]))
    ctx.metric("samples", float(report["samples"]))
    # Counts at the threshold give the dashboard exact class shares for lift and the matrix.
    ctx.metric("confusion", report["confusion"])
    ctx.metric("roc", report["roc"])
    ctx.metric("ks_curve", report["ks_curve"])
