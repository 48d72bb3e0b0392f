"""The intersect and binning benchmarks check their results against plaintext (nothing timed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import binning, datasets, intersect


def test_intersect_bench_finds_the_plaintext_intersection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(intersect.SIZES, "ids_test", 400)
    line = intersect.run_one("ids_test", tmp_path)
    assert line["correct"] is True
    assert line["rows_by_party"] == {"10000": 320, "20000": 320}
    assert 220 < line["intersection"] < 290  # about 0.8 * 0.8 * 400 = 256
    assert line["bytes_sent"] > 0 and line["auc"] is None


def test_binning_bench_matches_plaintext_iv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(binning.PARAMS, "key-bits", 1024)
    data = datasets.synthetic("synthetic_test", 300, tmp_path)
    line = binning.run_one(data, tmp_path)
    assert line["iv_max_abs_diff"] < 1e-9
    assert (line["rows"], line["guest_features"], line["host_features"]) == (300, 10, 20)
    assert set(line["parties"]) == {"10000", "20000"}
