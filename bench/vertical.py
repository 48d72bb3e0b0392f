"""One vertical algorithm on one data set (see :mod:`bench.datasets`), a guest and one or more
hosts each in its own process (see :mod:`bench.parties`), beside a scikit-learn model trained on
the joined data.

``peak_rss_mb`` is the largest party's peak (process and pool workers summed), and ``parties``
has each party's figures; ``cpu_s`` is the CPU time of every party and its pool workers: with
other jobs on the machine (see ``loadavg_1m``), ``wall_s`` overstates what the run needs. AUC and
KS are of the guest's training predictions.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from bench import datasets
from bench.common import Options, emit
from bench.parties import ProcessRun, run_in_processes
from fedalgo import metrics
from fedalgo.tables import read_table

GUEST = "10000"
HOSTS = ("20000", "30000")


@dataclass(frozen=True)
class Reference:
    """A centralised scikit-learn model: what it is, and a fit that returns its scores on x."""

    description: str
    fit: Callable[[np.ndarray, np.ndarray], np.ndarray]


def party_specs(
    guest: Path,
    hosts: list[Path],
    out: Path,
    params: dict[str, Any],
    spark_master: str = "",
    spark_submit_args: str = "",
) -> dict[str, dict[str, Any]]:
    """What the runners take: each party's role, the guest's ``params``, files in ``out``, and
    the Spark master every party computes on ('' for the local engine)."""
    if len(hosts) > len(HOSTS):
        raise ValueError(f"at most {len(HOSTS)} hosts")
    parties = [(GUEST, "guest", guest)]
    parties += [(pid, "host", path) for pid, path in zip(HOSTS, hosts, strict=False)]
    return {
        pid: {
            "role": role,
            "args": params if role == "guest" else {},
            "inputs": {"data": path},
            "outputs": {"model": out / f"{pid}.model", "predictions": out / f"{pid}.pred"},
            "spark_master": spark_master,
            "spark_submit_args": spark_submit_args,
        }
        for pid, role, path in parties
    }


def run_one(
    algorithm: str,
    data: datasets.VerticalData,
    params: dict[str, Any],
    reference: Reference,
    out: Path,
    *,
    timeout_s: float,
    spark_master: str = "",
    spark_submit_args: str = "",
) -> dict[str, Any]:
    """Train ``algorithm`` on ``data`` and return the benchmark's JSON object."""
    specs = party_specs(data.guest, data.hosts, out, params, spark_master, spark_submit_args)
    run = run_in_processes(algorithm, specs, timeout_s=timeout_s)
    table = read_table(out / f"{GUEST}.pred")
    y = np.array([int(r[1]) for r in table.rows])
    score = np.array([float(r[2]) for r in table.rows])
    del table
    curve = metrics.roc_curve(y, score)
    return {
        "bench": algorithm,
        "dataset": data.name,
        "algorithm": algorithm,
        "rows": len(y),
        "guest_features": data.guest_features,
        "host_features": sum(data.host_features),
        "host_features_by_party": dict(zip(HOSTS, data.host_features, strict=False)),
        "params": params,
        "engine": "spark" if spark_master else "local",
        "spark_master": spark_master or None,
        "spark_submit_args": spark_submit_args or None,
        "executors": max(r.executors for r in run.reports.values()),
        **run_figures(run),
        "auc": round(metrics.auc(curve), 5),
        "ks": round(metrics.ks(curve), 5),
        "sklearn_auc": round(float(roc_auc_score(data.y, reference.fit(data.x, data.y))), 5),
        "sklearn_model": reference.description,
    }


def run_figures(run: ProcessRun) -> dict[str, Any]:
    """Time, CPU, memory and bytes of a run: in total and per party."""
    reports = dict(sorted(run.reports.items()))
    return {
        "wall_s": round(run.wall_s, 2),
        "cpu_s": round(sum(r.cpu_s for r in reports.values()), 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(max(r.peak_rss_mb for r in reports.values()), 1),
        "driver_peak_rss_mb": round(max(r.process_peak_rss_mb for r in reports.values()), 1),
        "bytes_sent": sum(r.bytes_sent for r in reports.values()),
        "bytes_sent_by_party": {p: r.bytes_sent for p, r in reports.items()},
        "parties": {
            p: {
                "role": r.role,
                "wall_s": round(r.wall_s, 2),
                "cpu_s": round(r.cpu_s, 2),
                "peak_rss_mb": round(r.peak_rss_mb, 1),
                "process_peak_rss_mb": round(r.process_peak_rss_mb, 1),
                "worker_peak_rss_mb": round(r.worker_peak_rss_mb, 1),
                "jvm_peak_rss_mb": round(r.jvm_peak_rss_mb, 1),
                "engine_start_s": round(r.engine_start_s, 2),
                "executors": r.executors,
                "spark_stages": r.spark_stages,
            }
            for p, r in reports.items()
        },
    }


def run_all(
    algorithm: str,
    params: dict[str, dict[str, Any]],
    options: Options,
    reference: Callable[[dict[str, Any]], Reference],
    *,
    timeout_s: float,
) -> None:
    """Every data set of ``params`` but the large ones (or only ``--dataset``), a line each."""
    if options.dataset:
        if options.dataset not in params:
            raise SystemExit(
                f"bench {algorithm}: unknown dataset {options.dataset!r} ({', '.join(params)})"
            )
        names = [options.dataset]
    else:
        names = [name for name in params if name not in datasets.ONLY_BY_NAME]
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"bench-{algorithm}-") as tmp:
            work = Path(tmp)
            data = datasets.load(name, options.data_dir, work)
            master = options.spark_master if options.engine == "spark" else ""
            result = run_one(
                algorithm,
                data,
                params[name],
                reference(params[name]),
                work,
                timeout_s=timeout_s,
                spark_master=master,
                spark_submit_args=options.spark_submit_args if master else "",
            )
            emit(result, options)
