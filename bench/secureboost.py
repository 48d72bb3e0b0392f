"""hetero_secureboost on the shared vertical data sets, two parties over the in-memory federation.

The data sets are already aligned (same ids, same order), so the run is hetero_secureboost alone;
AUC and KS are of the guest's training predictions, beside scikit-learn's
GradientBoostingClassifier on the joined data with the same trees, depth and learning rate. Both
parties run in this one process (threads) and share the machine's cores, so ``wall_s`` counts the
guest's encryption and the host's histograms one after the other, as ``cpu_s`` does.
"""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from bench.common import Options, emit, hetero_paths, peak_rss_mb
from fedalgo import metrics
from fedalgo.federation import run_parties
from fedalgo.tables import read_dataset, read_table

GUEST, HOST = "10000", "20000"
# FATE's benchmark settings: 10 trees on breast, 30 trees of depth 3 with 32 bins on
# default_credit; learning rate 0.3 (FATE's default) for both.
PARAMS: dict[str, dict[str, Any]] = {
    "breast": {
        "key-bits": 2048,
        "num-trees": 10,
        "max-depth": 3,
        "learning-rate": 0.3,
        "bins": 32,
        "random-seed": 0,
    },
    "default_credit": {
        "key-bits": 2048,
        "num-trees": 30,
        "max-depth": 3,
        "learning-rate": 0.3,
        "bins": 32,
        "random-seed": 0,
    },
}


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _sklearn_auc(guest: Path, host: Path, params: dict[str, Any]) -> float:
    g, h = read_dataset(guest, with_label=True), read_dataset(host, with_label=False)
    assert g.y is not None and g.ids == h.ids, "the bench data sets are pre-aligned"
    x = np.hstack([g.x, h.x])
    model = GradientBoostingClassifier(
        n_estimators=params["num-trees"],
        max_depth=params["max-depth"],
        learning_rate=params["learning-rate"],
        random_state=0,
    ).fit(x, g.y)
    return float(roc_auc_score(g.y, model.predict_proba(x)[:, 1]))


def run_one(dataset: str, options: Options) -> dict[str, Any]:
    guest, host = hetero_paths(options.data_dir, dataset)
    params = PARAMS[dataset]
    with tempfile.TemporaryDirectory(prefix="bench-secureboost-") as tmp:
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
        result = run_parties("hetero_secureboost", specs, timeout_s=7200)
        cpu_s = _cpu_s() - cpu_started
        table = read_table(out / "g.pred")
        y = np.array([int(r[1]) for r in table.rows])
        score = np.array([float(r[2]) for r in table.rows])
    curve = metrics.roc_curve(y, score)
    return {
        "bench": "hetero_secureboost",
        "dataset": dataset,
        "algorithm": "hetero_secureboost",
        "rows": len(y),
        "guest_features": len(read_table(guest).header) - 2,
        "host_features": len(read_table(host).header) - 1,
        "params": params,
        "wall_s": round(result.elapsed_s, 2),
        "cpu_s": round(cpu_s, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        **peak_rss_mb(),
        "bytes_sent": result.federation.total_bytes,
        "bytes_sent_by_party": dict(result.federation.bytes_sent),
        "auc": round(metrics.auc(curve), 5),
        "ks": round(metrics.ks(curve), 5),
        "sklearn_auc": round(_sklearn_auc(guest, host, params), 5),
    }


def run(options: Options) -> None:
    for dataset in [options.dataset] if options.dataset else list(PARAMS):
        if dataset not in PARAMS:
            raise SystemExit(
                f"bench hetero_secureboost: unknown dataset {dataset!r} ({', '.join(PARAMS)})"
            )
        emit(run_one(dataset, options), options)
