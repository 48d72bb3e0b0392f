"""intersect (ECDH PSI over X25519) on generated ids, checked against the plaintext intersection.

Data set ``ids_<N>``: each party holds its own random 80 % of the ids 0..N-1 (seeded, drawn
independently, so about 64 % of N are common), in a random order. The run checks that both
parties wrote exactly the plaintext intersection, in one shared order (``correct``). ``rows`` is
N; there is no model, so ``auc``, ``ks`` and ``sklearn_auc`` are null.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bench import vertical
from bench.common import Options, emit
from bench.parties import run_in_processes
from fedalgo.tables import ID_COLUMN, read_table

SIZES = {"ids_10k": 10_000, "ids_100k": 100_000, "ids_1m": 1_000_000}
SHARE = 0.8
PARAMS: dict[str, Any] = {"shuffle": True}


def _ids(rows: int, party: int) -> np.ndarray:
    rng = np.random.default_rng([0, rows, party])
    return rng.permutation(rows)[: round(SHARE * rows)]


def _write_ids(path: Path, ids: np.ndarray) -> None:
    path.write_text(ID_COLUMN + "\n" + "\n".join(map(str, ids.tolist())) + "\n")


def run_one(name: str, work: Path) -> dict[str, Any]:
    rows = SIZES[name]
    held = {vertical.GUEST: _ids(rows, 0), vertical.HOSTS[0]: _ids(rows, 1)}
    specs = {}
    for k, (pid, ids) in enumerate(held.items()):
        _write_ids(work / f"{pid}.csv", ids)
        specs[pid] = {
            "role": "guest" if k == 0 else "host",
            "args": PARAMS if k == 0 else {},
            "inputs": {"data": work / f"{pid}.csv"},
            "outputs": {"data": work / f"{pid}.out.csv"},
        }
    run = run_in_processes("intersect", specs, timeout_s=3600)
    written = {pid: [r[0] for r in read_table(work / f"{pid}.out.csv").rows] for pid in held}
    expected = set.intersection(*(set(map(str, ids.tolist())) for ids in held.values()))
    guest_ids = written[vertical.GUEST]
    correct = all(ids == guest_ids for ids in written.values()) and (
        len(guest_ids) == len(expected) and set(guest_ids) == expected
    )
    return {
        "bench": "intersect",
        "dataset": name,
        "algorithm": "intersect",
        "rows": rows,
        "rows_by_party": {pid: len(ids) for pid, ids in held.items()},
        "guest_features": 0,
        "host_features": 0,
        "params": PARAMS,
        "intersection": len(guest_ids),
        "correct": correct,
        **vertical.run_figures(run),
        "auc": None,
        "ks": None,
        "sklearn_auc": None,
    }


def run(options: Options) -> None:
    if options.dataset is not None and options.dataset not in SIZES:
        raise SystemExit(
            f"bench intersect: unknown dataset {options.dataset!r} ({', '.join(SIZES)})"
        )
    for name in [options.dataset] if options.dataset else list(SIZES):
        with tempfile.TemporaryDirectory(prefix="bench-intersect-") as tmp:
            emit(run_one(name, Path(tmp)), options)
