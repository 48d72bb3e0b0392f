"""binning: split points against numpy, WOE/IV against a plaintext computation, hetero IV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fedalgo_helpers import GUEST, HOST, HOST2, party, read_matrix, read_rows, write_rows

from fedalgo.bin_edges import apply_splits, column_splits, fit_binning
from fedalgo.errors import ArgumentError, DataError
from fedalgo.federation import run_parties


def plain_iv(column_bins: np.ndarray, y: np.ndarray) -> float:
    """IV from scratch (FATE's convention: a bin missing a class counts half a row of it)."""
    total_pos, total_neg = y.sum(), len(y) - y.sum()
    iv = 0.0
    for b in np.unique(column_bins):
        pos = float(y[column_bins == b].sum())
        neg = float((column_bins == b).sum() - pos)
        if pos == 0 or neg == 0:
            pos, neg = pos + 0.5, neg + 0.5
        p, q = pos / total_pos, neg / total_neg
        iv += (p - q) * np.log(p / q)
    return iv


def test_quantile_splits_are_numpy_quantiles() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=1000)
    splits = column_splits(x, 10, "quantile")
    np.testing.assert_allclose(splits, np.quantile(x, np.arange(1, 10) / 10))
    bins = apply_splits(x[:, None], [splits])[:, 0]
    counts = np.bincount(bins)
    assert len(counts) == 10 and counts.min() >= 99 and counts.max() <= 101
    # x <= split goes to the lower bin: the rule tree splits rely on.
    assert (x[bins <= 3] <= splits[3]).all() and (x[bins > 3] > splits[3]).all()


def test_equal_width_and_ties() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 10.0])
    np.testing.assert_allclose(column_splits(x, 5, "equal-width"), [2.0, 4.0, 6.0, 8.0])
    constant = np.ones(50)
    assert column_splits(constant, 10, "quantile").size == 0
    few = np.array([0.0] * 90 + [1.0] * 10)
    # Ties collapse to distinct split points, none at the maximum (the last bin is never empty).
    expected = np.unique(np.quantile(few, np.arange(1, 10) / 10))
    assert column_splits(few, 10, "quantile").tolist() == expected[expected < 1.0].tolist()


def _run(tmp_path: Path, guest: Path, hosts: dict[str, Path], guest_args: dict, host_args: dict):
    specs = {GUEST: party("guest", tmp_path / "g", ("model",), guest_args, data=guest)}
    for pid, path in hosts.items():
        specs[pid] = party("host", tmp_path / pid, ("model",), host_args, data=path)
    return run_parties("binning", specs)


def test_hetero_iv_matches_plaintext_on_breast(tmp_path: Path, fl_data: Path) -> None:
    guest = fl_data / "breast_hetero_guest.csv"
    host = fl_data / "breast_hetero_host.csv"
    result = _run(tmp_path, guest, {HOST: host}, {"key-bits": 1024, "bins": 8}, {"bins": 8})
    _, _, g = read_matrix(guest)
    _, _, xh = read_matrix(host)
    y, xg = g[:, 0].astype(int), g[:, 1:]

    guest_model = json.loads((tmp_path / "g" / "model").read_text())
    host_model = json.loads((tmp_path / HOST / "model").read_text())
    for j, f in enumerate(guest_model["features"]):
        np.testing.assert_allclose(f["splits"], np.quantile(xg[:, j], np.arange(1, 8) / 8))
        bins = np.searchsorted(f["splits"], xg[:, j], side="left")
        assert f["iv"] == pytest.approx(plain_iv(bins, y), rel=1e-9)
    for j, f in enumerate(host_model["features"]):
        np.testing.assert_allclose(f["splits"], np.quantile(xh[:, j], np.arange(1, 8) / 8))
        bins = np.searchsorted(f["splits"], xh[:, j], side="left")
        assert f["iv"] == pytest.approx(plain_iv(bins, y), rel=1e-9)
        assert "woe" not in f and "events" not in f  # the host learns the IV only
    anon = guest_model["hosts"][HOST]
    assert [f["name"] for f in anon] == [f"host{HOST}_f{j}" for j in range(20)]
    assert [f["iv"] for f in anon] == [f["iv"] for f in host_model["features"]]
    assert "splits" not in json.dumps(anon)
    ivs = result.last(GUEST, "iv")
    assert set(ivs) == {f"x{j}" for j in range(10)} | {f"host{HOST}_f{j}" for j in range(20)}


def test_two_hosts_equal_width(tmp_path: Path, fl_data: Path, subset) -> None:
    guest = subset(fl_data / "breast_hetero_guest.csv", 200)
    host = subset(fl_data / "breast_hetero_host.csv", 200)
    _header, rows = read_rows(host)
    host_b = write_rows(tmp_path / "hb.csv", ["id", "z0", "z1"], [[r[0], r[3], r[5]] for r in rows])
    _run(
        tmp_path,
        guest,
        {HOST: host, HOST2: host_b},
        {"key-bits": 1024, "method": "equal-width", "bins": 5},
        {"method": "equal-width", "bins": 5},
    )
    _, _, g = read_matrix(guest)
    y = g[:, 0].astype(int)
    _, _, xb = read_matrix(host_b)
    model_b = json.loads((tmp_path / HOST2 / "model").read_text())
    fitted = fit_binning(xb, 5, "equal-width")
    for j, f in enumerate(model_b["features"]):
        low, high = xb[:, j].min(), xb[:, j].max()
        np.testing.assert_allclose(f["splits"], low + (high - low) * np.arange(1, 5) / 5)
        assert f["iv"] == pytest.approx(plain_iv(fitted.bins[:, j], y), rel=1e-9)


def test_bad_parameters_fail_before_work(tmp_path: Path, fl_data: Path, subset) -> None:
    guest = subset(fl_data / "breast_hetero_guest.csv", 30)
    host = subset(fl_data / "breast_hetero_host.csv", 30)
    with pytest.raises(ArgumentError, match="method"):
        _run(tmp_path, guest, {HOST: host}, {"method": "kmeans"}, {})
    with pytest.raises(ArgumentError, match="bins"):
        _run(tmp_path, guest, {HOST: host}, {"bins": 1}, {})
    with pytest.raises(ArgumentError, match="key-bits"):
        _run(tmp_path, guest, {HOST: host}, {"key-bits": 512}, {})
    ids = write_rows(tmp_path / "ids.csv", ["id"], [[r] for r in read_rows(host)[1][0]])
    _header, rows = read_rows(host)
    ids = write_rows(tmp_path / "ids.csv", ["id"], [[r[0]] for r in rows])
    with pytest.raises(DataError, match="no feature columns"):
        _run(tmp_path, guest, {HOST: ids}, {"key-bits": 1024}, {})
    gh, grows = read_rows(guest)
    bad = write_rows(tmp_path / "bad.csv", gh, [[r[0], "2", *r[2:]] for r in grows])
    with pytest.raises(DataError, match="0 or 1"):
        _run(tmp_path, bad, {HOST: host}, {"key-bits": 1024}, {})
