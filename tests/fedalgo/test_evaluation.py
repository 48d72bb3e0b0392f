"""evaluation: AUC/KS/threshold metrics against scikit-learn and an independent KS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fedalgo_helpers import GUEST, party, write_rows
from scipy.stats import ks_2samp
from sklearn import metrics as skm

from fedalgo.components.evaluation import MAX_CURVE_POINTS, evaluate
from fedalgo.errors import DataError
from fedalgo.federation import run_parties


def predictions(tmp_path: Path, y: np.ndarray, score: np.ndarray) -> Path:
    rows = [[i, int(t), repr(float(s))] for i, (t, s) in enumerate(zip(y, score, strict=True))]
    return write_rows(tmp_path / "pred.csv", ["id", "y", "score"], rows)


@pytest.mark.parametrize("n", [50, 3000])
def test_matches_sklearn_and_scipy(tmp_path: Path, n: int) -> None:
    rng = np.random.default_rng(n)
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(y * 1.2 + rng.normal(size=n))))
    score[: n // 5] = np.round(score[: n // 5], 1)  # ties
    result = run_parties(
        "evaluation",
        {
            GUEST: party(
                "guest", tmp_path / "g", ("metrics",), predictions=predictions(tmp_path, y, score)
            )
        },
    )
    report = json.loads((tmp_path / "g" / "metrics").read_text())
    assert report["auc"] == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    ks_ref = ks_2samp(score[y == 1], score[y == 0]).statistic
    assert report["ks"] == pytest.approx(ks_ref, abs=1e-12)
    pred = (score >= 0.5).astype(int)
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert report["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert report["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert report["f1"] == pytest.approx(skm.f1_score(y, pred))
    roc = report["roc"]
    assert 2 <= len(roc["fpr"]) <= MAX_CURVE_POINTS
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(roc["thresholds"]) <= 0)
    assert max(report["ks_curve"]["ks"]) == pytest.approx(report["ks"])  # the KS point is kept
    for name in ("auc", "ks", "accuracy", "precision", "recall", "f1"):
        assert type(result.last(GUEST, name)) is float
    assert set(result.last(GUEST, "roc")) == {"fpr", "tpr", "thresholds"}
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert result.last(GUEST, "confusion") == {"tp": tp, "fp": fp, "tn": tn, "fn": fn}
    assert result.last(GUEST, "samples") == n
    assert set(result.last(GUEST, "ks_curve")) == {"thresholds", "tpr", "fpr", "ks"}
    json.dumps(result.metrics[GUEST])  # every metric is JSON-able


def test_full_roc_equals_sklearn_when_small() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    score = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9])
    report = evaluate(y, score)
    fpr, tpr, _ = skm.roc_curve(y, score, drop_intermediate=False)
    assert report["roc"]["fpr"] == pytest.approx(fpr.tolist())
    assert report["roc"]["tpr"] == pytest.approx(tpr.tolist())


def test_one_class_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="both classes"):
        evaluate(np.ones(4, dtype=int), np.linspace(0, 1, 4))
