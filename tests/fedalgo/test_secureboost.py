"""hetero_secureboost against scikit-learn's GradientBoostingClassifier on breast (data/)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fedalgo_helpers import GUEST, HOST, HOST2, party, read_matrix, read_rows, write_rows
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from fedalgo import paillier
from fedalgo.bin_edges import fit_binning
from fedalgo.computing import LocalComputing
from fedalgo.errors import ArgumentError, DataError
from fedalgo.federation import RunResult, run_parties
from fedalgo.histogram import GradientPacking, bin_sums

OUTPUTS = ("model", "predictions")
SETTINGS = {"num-trees": 5, "max-depth": 3, "learning-rate": 0.3}


def boost(tmp_path: Path, guest: Path, hosts: dict[str, Path], args: dict[str, Any]) -> RunResult:
    specs = {GUEST: party("guest", tmp_path / "g", OUTPUTS, {"key-bits": 1024, **args}, data=guest)}
    for pid, path in hosts.items():
        specs[pid] = party("host", tmp_path / pid, OUTPUTS, data=path)
    return run_parties("hetero_secureboost", specs)


def scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    _, rows = read_rows(path)
    return np.array([int(r[1]) for r in rows]), np.array([float(r[2]) for r in rows])


def sklearn_auc(x: np.ndarray, y: np.ndarray) -> float:
    model = GradientBoostingClassifier(
        n_estimators=SETTINGS["num-trees"],
        max_depth=SETTINGS["max-depth"],
        learning_rate=SETTINGS["learning-rate"],
        random_state=0,
    ).fit(x, y)
    return float(roc_auc_score(y, model.predict_proba(x)[:, 1]))


@pytest.fixture(scope="module")
def breast(fl_data: Path) -> dict[str, Any]:
    guest = fl_data / "breast_hetero_guest.csv"
    host = fl_data / "breast_hetero_host.csv"
    _, _, g = read_matrix(guest)
    _, _, xh = read_matrix(host)
    return {"guest": guest, "host": host, "y": g[:, 0].astype(int), "xg": g[:, 1:], "xh": xh}


def test_auc_matches_sklearn_on_breast(tmp_path: Path, breast: dict[str, Any]) -> None:
    result = boost(tmp_path, breast["guest"], {HOST: breast["host"]}, SETTINGS)
    y, score = scores(tmp_path / "g" / "predictions")
    assert (y == breast["y"]).all()
    expected = sklearn_auc(np.hstack([breast["xg"], breast["xh"]]), breast["y"])
    assert abs(roc_auc_score(y, score) - expected) <= 0.005

    losses = [m.value for m in result.metric(GUEST, "loss")]
    assert len(losses) == 5 and all(a > b for a, b in itertools.pairwise(losses))

    guest_model = json.loads((tmp_path / "g" / "model").read_text())
    host_model = json.loads((tmp_path / HOST / "model").read_text())
    splits = [n for tree in guest_model["trees"] for n in tree if "left" in n]
    host_splits = [n for n in splits if n["party"] == HOST]
    assert host_splits, "the host's columns are informative: some splits should be its"
    # A host split is known to the guest only by an id and an anonymous column name.
    for n in host_splits:
        assert "threshold" not in n and n["feature"].startswith(f"host{HOST}_f")
    assert sorted(host_model["splits"]) == sorted(n["split_id"] for n in host_splits)
    for record in host_model["splits"].values():
        assert record["feature"] in {f"x{j}" for j in range(20)}
        assert isinstance(record["threshold"], float)

    importance = result.last(GUEST, "feature_importance")
    assert sum(importance.values()) == len(splits)
    assert set(importance) <= {f"x{j}" for j in range(10)} | {f"host{HOST}_f{j}" for j in range(20)}
    assert guest_model["feature_importance"]["split"] == importance
    assert set(guest_model["feature_importance"]["gain"]) == set(importance)


def test_two_hosts_subsample_and_gain_importance(tmp_path: Path, breast: dict[str, Any]) -> None:
    header, rows = read_rows(breast["host"])
    host_a = write_rows(tmp_path / "a.csv", header[:11], [r[:11] for r in rows])
    host_b = write_rows(tmp_path / "b.csv", ["id", *header[11:]], [[r[0], *r[11:]] for r in rows])
    args = {
        **SETTINGS,
        "subsample": 0.8,
        "random-seed": 1,
        "min-child-weight": 0.5,
        "bins": 16,
        "importance-type": "gain",
    }
    result = boost(tmp_path, breast["guest"], {HOST: host_a, HOST2: host_b}, args)
    y, score = scores(tmp_path / "g" / "predictions")
    expected = sklearn_auc(np.hstack([breast["xg"], breast["xh"]]), breast["y"])
    assert abs(roc_auc_score(y, score) - expected) <= 0.01
    importance = result.last(GUEST, "feature_importance")
    assert all(isinstance(v, float) and v > 0 for v in importance.values())
    model = json.loads((tmp_path / "g" / "model").read_text())
    parties = {n["party"] for tree in model["trees"] for n in tree if "left" in n}
    assert parties <= {GUEST, HOST, HOST2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"num-trees": 0}, "num-trees"),
        ({"max-depth": 0}, "max-depth"),
        ({"bins": 1}, "bins"),
        ({"subsample": 0}, "subsample"),
        ({"key-bits": 768}, "key-bits"),
        ({"importance-type": "cover"}, "importance-type"),
    ],
)
def test_bad_arguments_fail_before_work(
    tmp_path: Path, breast: dict[str, Any], args: dict[str, Any], message: str
) -> None:
    with pytest.raises(ArgumentError, match=message):
        boost(tmp_path, breast["guest"], {HOST: breast["host"]}, args)


def test_bad_data_fails_clearly(tmp_path: Path, breast: dict[str, Any], subset) -> None:
    guest = subset(breast["guest"], 40)
    host = subset(breast["host"], 40)
    _, rows = read_rows(host)
    ids_only = write_rows(tmp_path / "ids.csv", ["id"], [[r[0]] for r in rows])
    with pytest.raises(DataError, match="no feature columns"):
        boost(tmp_path, guest, {HOST: ids_only}, SETTINGS)
    header, grows = read_rows(guest)
    bad = write_rows(tmp_path / "bad.csv", header, [[r[0], "3", *r[2:]] for r in grows])
    with pytest.raises(DataError, match="0 or 1"):
        boost(tmp_path, bad, {HOST: host}, SETTINGS)
    one_class = write_rows(tmp_path / "one.csv", header, [[r[0], "1", *r[2:]] for r in grows])
    with pytest.raises(DataError, match="one class"):
        boost(tmp_path, one_class, {HOST: host}, SETTINGS)
    shorter = subset(breast["host"], 30)
    with pytest.raises(DataError, match="not aligned"):
        boost(tmp_path, guest, {HOST: shorter}, SETTINGS)


def test_packed_encrypted_histograms_equal_plaintext_sums() -> None:
    rng = np.random.default_rng(0)
    rows = 300
    x = rng.normal(size=(rows, 3))
    g, h = rng.uniform(-1, 1, rows), rng.uniform(0, 0.25, rows)
    public_key, private_key = paillier.generate_keypair(1024)
    packing = GradientPacking.for_rows(rows, public_key)
    assert packing.pairs_per_ciphertext >= 10
    cts = paillier.Encryptor(public_key, private_key=private_key).encrypt_ints(packing.pack(g, h))
    binned = fit_binning(x, 8, "quantile")
    total = sum(binned.bin_counts)
    sums = bin_sums(cts.ciphertexts, binned.flat(), total, public_key.nsquare)
    folded = paillier.EncryptedVector(public_key, packing.compress(sums, public_key.nsquare), 0)
    assert len(folded) == -(-total // packing.pairs_per_ciphertext)
    g_sum, h_sum = packing.unpack_sums(paillier.decrypt_ints(private_key, folded), total)
    flat = binned.flat()
    for j in range(3):
        np.testing.assert_allclose(
            g_sum[flat[:, j].min() : flat[:, j].max() + 1],
            np.bincount(binned.bins[:, j], weights=g),
            atol=rows * 2.0**-24,
        )
        np.testing.assert_allclose(
            h_sum[flat[:, j].min() : flat[:, j].max() + 1],
            np.bincount(binned.bins[:, j], weights=h),
            atol=rows * 2.0**-24,
        )


def test_histograms_over_the_pool_equal_one_process() -> None:
    public_key, private_key = paillier.generate_keypair(1024)
    encryptor = paillier.Encryptor(public_key, private_key=private_key)
    rng = np.random.default_rng(1)
    values = rng.integers(0, 1000, 500)
    cts = encryptor.encrypt_ints(values.tolist()).ciphertexts
    flat = np.stack([rng.integers(0, 4, 500), rng.integers(4, 9, 500)], axis=1)
    with LocalComputing(max_workers=2, min_items=100) as pool:
        if not pool.splits(len(cts)):
            pytest.skip("one core: the pool never leaves the calling process")
        pooled = bin_sums(cts, flat, 9, public_key.nsquare, pool)
    local = bin_sums(cts, flat, 9, public_key.nsquare)
    assert pooled == local  # the same products, multiplied in another order
    expected = [int(values[flat[:, 0] == b].sum()) for b in range(4)]
    got = paillier.decrypt_ints(private_key, paillier.EncryptedVector(public_key, pooled[:4], 0))
    assert got == expected
    with pytest.raises(ValueError, match="499 rows of bins but 500 ciphertexts"):
        with LocalComputing(max_workers=2, min_items=100) as pool:
            bin_sums(cts, flat[1:], 9, public_key.nsquare, pool)
