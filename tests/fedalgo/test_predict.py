"""predict: a trained hetero_secureboost or hetero_lr model scores new aligned rows jointly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fedalgo_helpers import GUEST, HOST, party, read_rows, write_rows
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from fedalgo.errors import DataError
from fedalgo.federation import run_parties

TRAIN_ROWS = 400


def split_rows(path: Path, out: Path) -> tuple[Path, Path]:
    header, rows = read_rows(path)
    return (
        write_rows(out / f"train_{path.name}", header, rows[:TRAIN_ROWS]),
        write_rows(out / f"test_{path.name}", header, rows[TRAIN_ROWS:]),
    )


def train(component: str, tmp: Path, guest: Path, host: Path, args: dict[str, Any]) -> None:
    outputs = ("model", "predictions")
    run_parties(
        component,
        {
            GUEST: party("guest", tmp / "g", outputs, args, data=guest),
            HOST: party("host", tmp / "h", outputs, data=host),
        },
    )


def predict(tmp: Path, guest: Path, host: Path, model_dir: Path) -> Path:
    run_parties(
        "predict",
        {
            GUEST: party(
                "guest", tmp / "pg", ("predictions",), data=guest, model=model_dir / "g" / "model"
            ),
            HOST: party(
                "host", tmp / "ph", ("predictions",), data=host, model=model_dir / "h" / "model"
            ),
        },
    )
    return tmp / "pg" / "predictions"


def column(path: Path, name: str) -> np.ndarray:
    header, rows = read_rows(path)
    return np.array([float(r[header.index(name)]) for r in rows])


@pytest.fixture(scope="module")
def boosted(fl_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("boost")
    g_train, g_test = split_rows(fl_data / "breast_hetero_guest.csv", tmp)
    h_train, h_test = split_rows(fl_data / "breast_hetero_host.csv", tmp)
    args = {"key-bits": 1024, "num-trees": 5, "max-depth": 3, "learning-rate": 0.3}
    train("hetero_secureboost", tmp, g_train, h_train, args)
    return {"dir": tmp, "g": (g_train, g_test), "h": (h_train, h_test)}


def test_secureboost_predict_reproduces_training_and_generalises(
    tmp_path: Path, boosted: dict[str, Any]
) -> None:
    g_train, g_test = boosted["g"]
    h_train, h_test = boosted["h"]
    again = predict(tmp_path / "train", g_train, h_train, boosted["dir"])
    np.testing.assert_allclose(
        column(again, "score"), column(boosted["dir"] / "g" / "predictions", "score"), rtol=1e-12
    )
    scored = predict(tmp_path / "test", g_test, h_test, boosted["dir"])
    _, grows = read_rows(g_train)
    _, hrows = read_rows(h_train)
    x_train = np.array(
        [[float(v) for v in g[2:] + h[1:]] for g, h in zip(grows, hrows, strict=True)]
    )
    y_train = np.array([int(g[1]) for g in grows])
    _, gt = read_rows(g_test)
    _, ht = read_rows(h_test)
    x_test = np.array([[float(v) for v in g[2:] + h[1:]] for g, h in zip(gt, ht, strict=True)])
    y_test = column(scored, "y").astype(int)
    sk = GradientBoostingClassifier(n_estimators=5, max_depth=3, learning_rate=0.3, random_state=0)
    sk.fit(x_train, y_train)
    sk_auc = roc_auc_score(y_test, sk.predict_proba(x_test)[:, 1])
    assert roc_auc_score(y_test, column(scored, "score")) >= sk_auc - 0.02


def test_predict_without_labels_and_with_extra_columns(
    tmp_path: Path, boosted: dict[str, Any]
) -> None:
    _, g_test = boosted["g"]
    _, h_test = boosted["h"]
    header, rows = read_rows(g_test)
    unlabelled = write_rows(
        tmp_path / "g.csv", [header[0], *header[2:], "extra"], [[r[0], *r[2:], "1.0"] for r in rows]
    )
    scored = predict(tmp_path, unlabelled, h_test, boosted["dir"])
    out_header, out_rows = read_rows(scored)
    assert out_header == ["id", "score"] and len(out_rows) == len(rows)


def test_predict_needs_the_model_columns(tmp_path: Path, boosted: dict[str, Any]) -> None:
    _, g_test = boosted["g"]
    _, h_test = boosted["h"]
    header, rows = read_rows(h_test)
    fewer = write_rows(tmp_path / "h.csv", header[:5], [r[:5] for r in rows])
    with pytest.raises(DataError, match="lacks the model's columns"):
        predict(tmp_path, g_test, fewer, boosted["dir"])
    with pytest.raises(DataError, match="host's model"):
        run_parties(
            "predict",
            {
                GUEST: party(
                    "guest",
                    tmp_path / "pg",
                    ("predictions",),
                    data=g_test,
                    model=boosted["dir"] / "h" / "model",
                ),
                HOST: party(
                    "host",
                    tmp_path / "ph",
                    ("predictions",),
                    data=h_test,
                    model=boosted["dir"] / "h" / "model",
                ),
            },
        )


def test_hetero_lr_predict_matches_training_predictions(
    tmp_path: Path, fl_data: Path, subset
) -> None:
    guest = subset(fl_data / "breast_hetero_guest.csv", 80)
    host = subset(fl_data / "breast_hetero_host.csv", 80)
    train("hetero_lr", tmp_path, guest, host, {"key-bits": 1024, "max-iter": 3, "tol": 0})
    scored = predict(tmp_path, guest, host, tmp_path)
    np.testing.assert_allclose(
        column(scored, "score"), column(tmp_path / "g" / "predictions", "score"), rtol=1e-9
    )
