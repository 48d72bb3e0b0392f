"""hetero_lr on the shared vertical data sets, two parties over the in-memory federation.

The data sets are already aligned (same ids, same order) and standardised, so the run is
hetero_lr alone; AUC and KS are of the guest's training predictions, beside scikit-learn's
LogisticRegression on the joined data. Both parties run in this one process (threads), so
``peak_rss_mb`` covers both, and ``children_peak_rss_mb`` the largest pool worker. ``cpu_s`` is
the CPU time of both parties and their pool workers: with other jobs on the machine (see
``loadavg_1m``), ``wall_s`` overstates what the run needs.
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bench.common import Options, emit, hetero_paths, peak_rss_mb
from fedalgo import metrics
from fedalgo.federation import run_parties
from fedalgo.tables import read_dataset, read_table

GUEST, HOST = "10000", "20000"
# The target run: 2048-bit keys, 10 epochs. Mini-batches converge in fewer epochs than
# full batches (default_credit's 3200 rows are enough for the pool to split each fold); the rest
# are the component's defaults.
PARAMS: dict[str, dict[str, Any]] = {
    "breast": {
        "key-bits": 2048,
        "max-iter": 10,
        "learning-rate": 0.15,
        "batch-size": 64,
        "random-seed": 0,
        "tol": 0,
    },
    "default_credit": {
        "key-bits": 2048,
        "max-iter": 10,
        "learning-rate": 0.3,
        "batch-size": 3200,
        "random-seed": 0,
        "tol": 0,
    },
}


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (the pool workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sklearn_auc(guest: Path, host: Path) -> float:
    g, h = read_dataset(guest, with_label=True), read_dataset(host, with_label=False)
    assert g.y is not None and g.ids == h.ids, "the bench data sets are pre-aligned"
    x = np.hstack([g.x, h.x])
    model = LogisticRegression(max_iter=1000).fit(x, g.y)
    return float(roc_auc_score(g.y, model.decision_function(x)))


def run_one(dataset: str, options: Options) -> dict[str, Any]:
    guest, host = hetero_paths(options.data_dir, dataset)
    params = PARAMS[dataset]
    with tempfile.TemporaryDirectory(prefix="bench-hetero-lr-") as tmp:
        out = Path(tmp)
        specs = {
            GUEST: {
                "role": "guest",
                "args": params,
                "inputs": {"data": guest},
                "outputs": {"model": out / "g.model", "predictions": out / "g.pred"},
            },
            HOST: {
                "role": "host",
                "args": {},
                "inputs": {"data": host},
                "outputs": {"model": out / "h.model", "predictions": out / "h.pred"},
            },
        }
        cpu_started = _cpu_s()
        result = run_parties("hetero_lr", specs, timeout_s=3600)
        cpu_s = _cpu_s() - cpu_started
        table = read_table(out / "g.pred")
        y = np.array([int(r[1]) for r in table.rows])
        score = np.array([float(r[2]) for r in table.rows])
    curve = metrics.roc_curve(y, score)
    g_header = read_table(guest).header
    h_header = read_table(host).header
    return {
        "bench": "hetero_lr",
        "dataset": dataset,
        "algorithm": "hetero_lr",
        "rows": len(y),
        "guest_features": len(g_header) - 2,
        "host_features": len(h_header) - 1,
        "params": params,
        "wall_s": round(result.elapsed_s, 2),
        "cpu_s": round(cpu_s, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **peak_rss_mb(),
        "bytes_sent": result.federation.total_bytes,
        "bytes_sent_by_party": dict(result.federation.bytes_sent),
        "auc": round(metrics.auc(curve), 5),
        "ks": round(metrics.ks(curve), 5),
        "sklearn_auc": round(_sklearn_auc(guest, host), 5),
    }


def run(options: Options) -> None:
    for dataset in [options.dataset] if options.dataset else list(PARAMS):
        if dataset not in PARAMS:
            raise SystemExit(f"bench hetero_lr: unknown dataset {dataset!r} ({', '.join(PARAMS)})")
        emit(run_one(dataset, options), options)
