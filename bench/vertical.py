"""One vertical algorithm on a shared pre-aligned data set, guest and host over the in-memory
federation, beside a scikit-learn model trained on the joined data.

Both parties run in this one process (threads), so ``peak_rss_mb`` covers both and
``children_peak_rss_mb`` the largest pool worker; ``cpu_s`` is the CPU time of both parties and
their pool workers: with other jobs on the machine (see ``loadavg_1m``), ``wall_s`` overstates
what the run needs.
"""

from __future__ import annotations

import os
import resource
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.common import Options, emit, hetero_paths, peak_rss_mb
from fedalgo import metrics
from fedalgo.federation import run_parties
from fedalgo.tables import read_dataset, read_table

GUEST, HOST = "10000", "20000"

# Fits a centralised model on (x, y) and returns its scores on x.
Reference = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _reference_auc(guest: Path, host: Path, reference: Reference) -> float:
    g, h = read_dataset(guest, with_label=True), read_dataset(host, with_label=False)
    assert g.y is not None and g.ids == h.ids, "the bench data sets are pre-aligned"
    x = np.hstack([g.x, h.x])
    return float(roc_auc_score(g.y, reference(x, g.y)))


def run_one(
    algorithm: str,
    dataset: str,
    params: dict[str, Any],
    options: Options,
    reference: Reference,
    *,
    timeout_s: float,
) -> dict[str, Any]:
    """Train ``algorithm`` on ``dataset`` and return the benchmark's JSON object."""
    guest, host = hetero_paths(options.data_dir, dataset)
    with tempfile.TemporaryDirectory(prefix=f"bench-{algorithm}-") as tmp:
        out = Path(tmp)
        specs = {
            party: {
                "role": role,
                "args": params if role == "guest" else {},
                "inputs": {"data": data},
                "outputs": {"model": out / f"{role}.model", "predictions": out / f"{role}.pred"},
            }
            for party, role, data in ((GUEST, "guest", guest), (HOST, "host", host))
        }
        cpu_started = _cpu_s()
        result = run_parties(algorithm, specs, timeout_s=timeout_s)
        cpu_s = _cpu_s() - cpu_started
        table = read_table(out / "guest.pred")
        y = np.array([int(r[1]) for r in table.rows])
        score = np.array([float(r[2]) for r in table.rows])
    curve = metrics.roc_curve(y, score)
    return {
        "bench": algorithm,
        "dataset": dataset,
        "algorithm": algorithm,
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
        "sklearn_auc": round(_reference_auc(guest, host, reference), 5),
    }


def run_all(
    algorithm: str,
    params: dict[str, dict[str, Any]],
    options: Options,
    reference: Callable[[dict[str, Any]], Reference],
    *,
    timeout_s: float,
) -> None:
    """Every data set of ``params`` (or only ``--dataset``), one JSON line each."""
    for dataset in [options.dataset] if options.dataset else list(params):
        if dataset not in params:
            raise SystemExit(
                f"bench {algorithm}: unknown dataset {dataset!r} ({', '.join(params)})"
            )
        ref = reference(params[dataset])
        emit(
            run_one(algorithm, dataset, params[dataset], options, ref, timeout_s=timeout_s), options
        )
