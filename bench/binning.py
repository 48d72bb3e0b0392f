"""binning with hetero WOE/IV on the vertical data sets (see :mod:`bench.datasets`), checked
against the IV computed in plaintext on the joined data with the same bins.

Every party bins its own columns (quantile, 10 bins); the guest encrypts its labels (2048-bit
Paillier) and each host sums them per bin. ``iv_max_abs_diff`` is the largest difference between
a host column's IV from the protocol and from the plaintext labels: event counts are exact, so it
is 0 up to float rounding. There is no model, so ``auc``, ``ks`` and ``sklearn_auc`` are null.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench import datasets, vertical
from bench.common import Options, emit
from bench.parties import run_in_processes
from fedalgo.bin_edges import fit_binning, woe_iv

METHOD, BINS = "quantile", 10
OWN: dict[str, Any] = {"method": METHOD, "bins": BINS}
PARAMS: dict[str, Any] = {**OWN, "key-bits": 2048, "iv": True}
NAMES = tuple(name for name in datasets.NAMES if name not in datasets.ONLY_BY_NAME)


def _plaintext_ivs(x: np.ndarray, y: np.ndarray) -> list[float]:
    fitted = fit_binning(x, BINS, METHOD)
    ivs = []
    for j, k in enumerate(fitted.bin_counts):
        counts = np.bincount(fitted.bins[:, j], minlength=k)
        events = np.bincount(fitted.bins[:, j], weights=y, minlength=k)
        ivs.append(woe_iv(events, counts, int(y.sum()), len(y)).iv)
    return ivs


def run_one(data: datasets.VerticalData, work: Path) -> dict[str, Any]:
    hosts = dict(zip(vertical.HOSTS, data.hosts, strict=False))
    specs = {
        vertical.GUEST: {
            "role": "guest",
            "args": PARAMS,
            "inputs": {"data": data.guest},
            "outputs": {"model": work / "guest.model"},
        },
        **{
            pid: {
                "role": "host",
                "args": OWN,
                "inputs": {"data": path},
                "outputs": {"model": work / f"{pid}.model"},
            }
            for pid, path in hosts.items()
        },
    }
    run = run_in_processes("binning", specs, timeout_s=3600)
    model = json.loads((work / "guest.model").read_text())
    diff = 0.0
    start = data.guest_features
    for pid, width in zip(hosts, data.host_features, strict=True):
        protocol = [f["iv"] for f in model["hosts"][pid]]
        plain = _plaintext_ivs(data.x[:, start : start + width], data.y)
        diff = max(diff, *(abs(a - b) for a, b in zip(protocol, plain, strict=True)))
        start += width
    return {
        "bench": "binning",
        "dataset": data.name,
        "algorithm": "binning",
        "rows": data.rows,
        "guest_features": data.guest_features,
        "host_features": sum(data.host_features),
        "params": PARAMS,
        "iv_max_abs_diff": diff,
        **vertical.run_figures(run),
        "auc": None,
        "ks": None,
        "sklearn_auc": None,
    }


def run(options: Options) -> None:
    if options.dataset is not None and options.dataset not in datasets.NAMES:
        names = ", ".join(datasets.NAMES)
        raise SystemExit(f"bench binning: unknown dataset {options.dataset!r} ({names})")
    for name in [options.dataset] if options.dataset else NAMES:
        with tempfile.TemporaryDirectory(prefix="bench-binning-") as tmp:
            work = Path(tmp)
            emit(run_one(datasets.load(name, options.data_dir, work), work), options)
