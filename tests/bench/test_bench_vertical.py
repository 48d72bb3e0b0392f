"""The vertical benchmarks' data sets and their one-process-per-party runner (nothing is timed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bench.parties import run_in_processes

from bench import datasets, vertical
from fedalgo.federation import run_parties
from fedalgo.tables import read_dataset, read_table


def test_synthetic_files_hold_the_joined_arrays(tmp_path: Path) -> None:
    data = datasets.synthetic("synthetic_test", 500, tmp_path)
    guest = read_dataset(data.guest, with_label=True)
    (host_path,) = data.hosts
    host = read_dataset(host_path, with_label=False)
    assert guest.ids == host.ids == [str(i) for i in range(500)]
    assert (guest.x.shape, host.x.shape) == ((500, 10), (500, 20))
    np.testing.assert_allclose(np.hstack([guest.x, host.x]), data.x, atol=1e-12)
    assert guest.y is not None and (guest.y == data.y).all()


def test_synthetic_labels_depend_on_both_parties() -> None:
    x, y = datasets.synthetic_arrays(20_000)
    coef = datasets.synthetic_coefficients()
    g = datasets.SYNTHETIC_GUEST_FEATURES
    assert 0.2 < y.mean() < 0.45
    # Each party's share of the logit separates the classes on its own.
    for part in (slice(None, g), slice(g, None)):
        logit = x[:, part] @ coef[part]
        assert logit[y == 1].mean() - logit[y == 0].mean() > 0.5


def test_synthetic_sizes_share_one_model() -> None:
    x_small, _ = datasets.synthetic_arrays(100)
    x_again, _ = datasets.synthetic_arrays(100)
    np.testing.assert_array_equal(x_small, x_again)
    assert datasets.synthetic_coefficients().shape == (30,)


def test_three_party_split_keeps_every_host_column_once(tmp_path: Path, fl_data: Path) -> None:
    data = datasets.load("default_credit_3party", fl_data, tmp_path)
    two = datasets.load("default_credit", fl_data, tmp_path)
    assert data.host_features == [5, 5] and len(data.hosts) == 2
    ids = read_table(data.guest).rows
    joined = [read_dataset(p, with_label=False) for p in data.hosts]
    assert all(h.ids == [r[0] for r in ids] for h in joined)
    original = read_dataset(two.hosts[0], with_label=False)
    np.testing.assert_array_equal(np.hstack([h.x for h in joined]), original.x)
    np.testing.assert_array_equal(data.x, two.x)


LR_ARGS = {"key-bits": 1024, "max-iter": 2, "batch-size": 100, "random-seed": 0, "tol": 0}


@pytest.mark.parametrize("hosts", [1, 2])
def test_processes_train_what_threads_train(tmp_path: Path, hosts: int) -> None:
    data = datasets.synthetic("synthetic_test", 300, tmp_path)
    host_paths = data.hosts
    if hosts == 2:
        host_paths = datasets._split_host("split", data, 8, tmp_path).hosts
    (tmp_path / "threads").mkdir()
    (tmp_path / "processes").mkdir()
    threads = vertical.party_specs(data.guest, host_paths, tmp_path / "threads", LR_ARGS)
    processes = vertical.party_specs(data.guest, host_paths, tmp_path / "processes", LR_ARGS)
    by_threads = run_parties("hetero_lr", threads, timeout_s=120)
    run = run_in_processes("hetero_lr", processes, timeout_s=120)
    assert sorted(run.reports) == sorted(processes)
    # The fixed-point protocol is exact: both runners give the same predictions, byte for byte.
    assert (tmp_path / "processes" / "10000.pred").read_text() == (
        tmp_path / "threads" / "10000.pred"
    ).read_text()
    # Each run makes its own keys, so ciphertexts (and byte counts) differ a little.
    for pid, sent in by_threads.federation.bytes_sent.items():
        assert abs(run.reports[pid].bytes_sent - sent) <= 0.01 * sent
    for report in run.reports.values():
        assert report.peak_rss_mb >= report.process_peak_rss_mb > 0


def test_a_failing_party_is_reported_not_the_peer_it_left_waiting(tmp_path: Path) -> None:
    data = datasets.synthetic("synthetic_test", 50, tmp_path)
    specs = vertical.party_specs(data.guest, data.hosts, tmp_path, {**LR_ARGS, "max-iter": 0})
    with pytest.raises(RuntimeError, match=r"(?s)party 10000 \(guest\).*max-iter"):
        run_in_processes("hetero_lr", specs, timeout_s=60)
