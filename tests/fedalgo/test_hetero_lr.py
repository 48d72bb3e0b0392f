"""hetero_lr: federated training equals plaintext gradient descent; the demo pipeline end to end."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from fedalgo_helpers import (
    GUEST,
    HOST,
    HOST2,
    batch_order,
    party,
    read_matrix,
    read_rows,
    train,
    write_rows,
)
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from fedalgo import paillier
from fedalgo.components import hetero_lr
from fedalgo.errors import ArgumentError, DataError
from fedalgo.federation import RunResult, run_parties
from fedalgo.logistic import batches

FAST = {"key-bits": 1024, "tol": 0}


def run_lr(tmp_path: Path, guest: Path, *hosts: Path, args: dict | None = None) -> RunResult:
    specs = {
        GUEST: party(
            "guest", tmp_path / "g", ("model", "predictions"), {**FAST, **(args or {})}, data=guest
        )
    }
    for pid, path in zip((HOST, HOST2), hosts, strict=False):
        specs[pid] = party("host", tmp_path / pid, ("model", "predictions"), data=path)
    return run_parties("hetero_lr", specs, timeout_s=120)


def load(guest: Path, *hosts: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    _, _, g = read_matrix(guest)
    return g[:, 1:], [read_matrix(h)[2] for h in hosts], g[:, 0].astype(int)


def split_rows(path: Path, out: Path) -> tuple[Path, list[list[str]]]:
    """``path``'s rows but every fifth (written to ``out``), and the held-out fifth."""
    header, rows = read_rows(path)
    train_rows = [r for i, r in enumerate(rows) if i % 5]
    return write_rows(out, header, train_rows), [r for i, r in enumerate(rows) if not i % 5]


def matrix(rows: list[list[str]]) -> np.ndarray:
    return np.array([[float(v) for v in r[1:]] for r in rows])


def test_the_plaintext_reference_converges_to_sklearns_optimum(fl_data: Path) -> None:
    """The reference minimises what scikit-learn's L2 LogisticRegression does: the mean log loss
    + alpha/2 |w|^2 is sklearn's objective with C = 1 / (alpha n), intercept unpenalised."""
    xg, xh, y = load(fl_data / "breast_hetero_guest.csv", fl_data / "breast_hetero_host.csv")
    alpha = 0.01
    ref = train(xg, xh, y, max_iter=8_000, alpha=alpha)
    sk = LogisticRegression(C=1 / (alpha * len(y)), tol=1e-10, max_iter=10_000)
    sk.fit(np.hstack([xg, *xh]), y)
    np.testing.assert_allclose(np.concatenate([ref.w_guest, *ref.w_hosts]), sk.coef_[0], atol=1e-5)
    assert ref.intercept == pytest.approx(sk.intercept_[0], abs=1e-5)


def test_equals_plaintext_training_on_breast(tmp_path: Path, fl_data: Path) -> None:
    """Trained on four fifths of breast: the same weights, losses and scores as the plaintext
    reference, and on the held-out fifth an AUC within 0.005 of scikit-learn's."""
    guest, guest_test = split_rows(fl_data / "breast_hetero_guest.csv", tmp_path / "guest.csv")
    host, host_test = split_rows(fl_data / "breast_hetero_host.csv", tmp_path / "host.csv")
    args = {"max-iter": 10, "learning-rate": 0.15, "alpha": 0.01}
    result = run_lr(tmp_path, guest, host, args=args)
    xg, xh, y = load(guest, host)
    ref = train(xg, xh, y, max_iter=10, learning_rate_=0.15, alpha=0.01)

    guest_model = json.loads((tmp_path / "g" / "model").read_text())
    host_model = json.loads((tmp_path / HOST / "model").read_text())
    assert np.allclose(guest_model["weights"], ref.w_guest, atol=1e-6)
    assert guest_model["intercept"] == pytest.approx(ref.intercept, abs=1e-6)
    assert np.allclose(host_model["weights"], ref.w_hosts[0], atol=1e-6)
    # Each party's model holds its own weights only.
    assert len(guest_model["weights"]) == 10 and len(host_model["weights"]) == 20
    assert "intercept" not in host_model and guest_model["features"] == [f"x{j}" for j in range(10)]

    losses = [m.value for m in result.metric(GUEST, "loss")]
    assert [m.step for m in result.metric(GUEST, "loss")] == list(range(10))
    assert np.allclose(losses, ref.losses, atol=1e-6)
    header, rows = read_rows(tmp_path / "g" / "predictions")
    assert header == ["id", "y", "score"]
    scores = np.array([float(r[2]) for r in rows])
    assert [r[0] for r in rows] == [r[0] for r in read_rows(guest)[1]]
    assert np.allclose(scores, ref.scores(xg, xh), atol=1e-6)

    # The federated model on the held-out rows, against scikit-learn's with the same penalty.
    test_g, test_h = matrix(guest_test), matrix(host_test)
    y_test, xg_test = test_g[:, 0].astype(int), test_g[:, 1:]
    logits = (
        xg_test @ np.array(guest_model["weights"])
        + guest_model["intercept"]
        + test_h @ np.array(host_model["weights"])
    )
    sk = LogisticRegression(C=1 / (0.01 * len(y)), max_iter=10_000).fit(np.hstack([xg, *xh]), y)
    sk_auc = roc_auc_score(y_test, sk.decision_function(np.hstack([xg_test, test_h])))
    assert abs(roc_auc_score(y_test, logits) - sk_auc) < 0.005, (
        roc_auc_score(y_test, logits),
        sk_auc,
    )


def test_demo_pipeline_auc_is_within_001_of_sklearn(
    tmp_path: Path, demo_data: tuple[Path, Path]
) -> None:
    guest_csv, host_csv = demo_data
    sides = {GUEST: ("guest", guest_csv), HOST: ("host", host_csv)}

    def step(name: str, outputs: tuple[str, ...], inputs: dict[str, dict[str, Path]], args=None):
        specs = {
            pid: party(role, tmp_path / name / pid, outputs, args, **inputs[pid])
            for pid, (role, _) in sides.items()
            if pid in inputs
        }
        return run_parties(name, specs, timeout_s=120)

    step("intersect", ("data",), {pid: {"data": p} for pid, (_, p) in sides.items()})
    step(
        "scale",
        ("data", "model"),
        {pid: {"data": tmp_path / "intersect" / pid / "data"} for pid in sides},
    )
    step(
        "hetero_lr",
        ("model", "predictions"),
        {pid: {"data": tmp_path / "scale" / pid / "data"} for pid in sides},
        {**FAST, "max-iter": 15},
    )
    result = step(
        "evaluation",
        ("metrics",),
        {GUEST: {"predictions": tmp_path / "hetero_lr" / GUEST / "predictions"}},
    )
    federated_auc = result.last(GUEST, "auc")

    # sklearn on the same rows, joined by id, scaled the same way (fit on the intersection).
    _g_header, g_ids, g = read_matrix(guest_csv)
    _, h_ids, h = read_matrix(host_csv)
    common = sorted(set(g_ids) & set(h_ids))
    gi, hi = {k: n for n, k in enumerate(g_ids)}, {k: n for n, k in enumerate(h_ids)}
    y = g[[gi[k] for k in common], 0].astype(int)
    x = np.hstack([g[[gi[k] for k in common], 1:], h[[hi[k] for k in common]]])
    x = StandardScaler().fit_transform(x)
    sk = LogisticRegression(C=1 / (0.01 * len(y)), max_iter=10_000).fit(x, y)  # the same penalty
    sk_auc = roc_auc_score(y, sk.decision_function(x))
    assert len(common) == 513
    assert abs(federated_auc - sk_auc) < 0.01, (federated_auc, sk_auc)


def test_minibatches_decay_and_early_stopping_two_hosts(
    tmp_path: Path, fl_data: Path, subset
) -> None:
    guest = subset(fl_data / "breast_hetero_guest.csv", 120)
    header, rows = read_rows(subset(fl_data / "breast_hetero_host.csv", 120))
    host1 = write_rows(tmp_path / "h1.csv", header[:8], [r[:8] for r in rows])
    host2 = write_rows(
        tmp_path / "h2.csv", [header[0], *header[8:]], [[r[0], *r[8:]] for r in rows]
    )
    args = {"batch-size": 50, "decay": 0.5, "tol": 0.02, "max-iter": 20, "random-seed": 7}
    result = run_lr(tmp_path, guest, host1, host2, args=args)
    xg, xh, y = load(guest, host1, host2)
    ref = train(xg, xh, y, batch_size=50, decay=0.5, tol=0.02, max_iter=20, seed=7)
    losses = [m.value for m in result.metric(GUEST, "loss")]
    assert 1 < len(losses) == len(ref.losses) < 20  # stopped early, at the same epoch
    model = json.loads((tmp_path / "g" / "model").read_text())
    assert model["converged"] and model["iterations"] == len(losses)
    assert np.allclose(model["weights"], ref.w_guest, atol=1e-6)
    for pid, w in zip((HOST, HOST2), ref.w_hosts, strict=True):
        assert np.allclose(
            json.loads((tmp_path / pid / "model").read_text())["weights"], w, atol=1e-6
        )


def test_batches_partition_the_rows_the_same_way_everywhere() -> None:
    a = batches(103, 25, seed=5, epoch=2)
    assert [len(b) for b in a] == [25, 25, 25, 25, 3]
    assert sorted(np.concatenate(a).tolist()) == list(range(103))
    assert all(
        np.array_equal(x, y) for x, y in zip(a, batches(103, 25, seed=5, epoch=2), strict=True)
    )
    assert not np.array_equal(a[0], batches(103, 25, seed=5, epoch=3)[0])
    assert len(batches(10, -1, seed=0, epoch=0)) == 1
    # the order the plaintext reference derives from the documented rule
    reference = batch_order(103, 25, seed=5, epoch=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, reference, strict=True))


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    guest = write_rows(
        tmp_path / "tg.csv", ["id", "y", "a"], [[i, i % 2, rng.normal()] for i in range(12)]
    )
    host = write_rows(
        tmp_path / "th.csv", ["id", "b", "c"], [[i, rng.normal(), rng.normal()] for i in range(12)]
    )
    return guest, host


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"key-bits": 512}, "'key-bits' should be 1024 or 2048, got 512"),
        ({"learning-rate": 0}, "'learning-rate' should be greater than 0"),
        ({"batch-size": 0}, "'batch-size' must be -1 or >= 1"),
        ({"max-iter": "many"}, "'max-iter' should be a valid integer"),
    ],
)
def test_bad_arguments(tmp_path: Path, tiny, args: dict, message: str) -> None:
    with pytest.raises(ArgumentError, match=message):
        run_lr(tmp_path, *tiny, args=args)


def test_1024_bit_keys_log_a_warning(
    tmp_path: Path, tiny, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="fedalgo"):
        run_lr(tmp_path, *tiny, args={"max-iter": 1})
    assert any("1024" in r.message for r in caplog.records)


def test_labels_must_be_0_or_1(tmp_path: Path, tiny) -> None:
    guest = write_rows(tmp_path / "bad.csv", ["id", "y", "a"], [[i, i % 3, 0.5] for i in range(12)])
    with pytest.raises(DataError, match="labels in 'y' must be 0 or 1, found 2"):
        run_lr(tmp_path, guest, tiny[1])


def test_guest_needs_a_label_column(tmp_path: Path, tiny) -> None:
    with pytest.raises(DataError, match="needs a label column 'y'"):
        run_lr(tmp_path, tiny[1], tiny[1])


def test_host_needs_features(tmp_path: Path, tiny) -> None:
    host = write_rows(tmp_path / "ids.csv", ["id"], [[i] for i in range(12)])
    with pytest.raises(DataError, match="no feature columns"):
        run_lr(tmp_path, tiny[0], host)


def test_rows_must_be_aligned(tmp_path: Path, tiny) -> None:
    header, rows = read_rows(tiny[1])
    host = write_rows(tmp_path / "shuffled.csv", header, rows[::-1])
    with pytest.raises(DataError, match="not aligned"):
        run_lr(tmp_path, tiny[0], host)


def test_penalty_none_and_unknown_penalty(tmp_path: Path, tiny) -> None:
    def weights(args: dict) -> list[float]:
        run_lr(tmp_path, *tiny, args={"max-iter": 3, **args})
        return json.loads((tmp_path / "g" / "model").read_text())["weights"]

    unpenalised = weights({"alpha": 0.0})
    assert weights({"penalty": "none", "alpha": 5.0}) == pytest.approx(unpenalised, abs=1e-12)
    assert weights({"alpha": 5.0}) != pytest.approx(unpenalised, abs=1e-6)
    with pytest.raises(ArgumentError, match="'penalty' should be 'L2' or 'none'"):
        run_lr(tmp_path, *tiny, args={"penalty": "L1"})


def test_packing_is_the_same_across_blocks_of_rows() -> None:
    """The host packs its rows a block at a time: every row's plaintexts are its slots, in
    order, whichever block it falls in."""
    public_key, _ = paillier.generate_keypair(1024)
    rng = np.random.default_rng(4)
    x = paillier.encode(rng.normal(size=(hetero_lr.PACK_BLOCK_ROWS + 3, 7)), -6)
    packing = hetero_lr._Packing.for_data(x, public_key)
    packed = packing.pack_rows(x)
    assert len(packed) == len(x) * packing.per_row
    for i in (0, hetero_lr.PACK_BLOCK_ROWS - 1, hetero_lr.PACK_BLOCK_ROWS, len(x) - 1):
        row = packed[i * packing.per_row : (i + 1) * packing.per_row]
        assert packing.unpack(row, x.shape[1]) == x[i].tolist()
