"""Write a two-party demo data set: scikit-learn's bundled breast-cancer data, split vertically.

The guest gets ``id, y, x0..x9`` (the first 10 features and the label), the host ``id, x0..x19``
(the other 20), the same column layout as FATE's ``breast_hetero_*.csv``. Unlike those files the
values are unscaled, each side lists its ids in its own random order, and about 5% of each
side's rows have no partner on the other side, so the ``intersect`` and ``scale`` steps matter.
Nothing is downloaded.

    python examples/make_demo_data.py OUT_DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

GUEST_FEATURES = 10
ONE_SIDED_FRACTION = 0.05


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def make_breast_split(out_dir: Path | str, seed: int = 0) -> tuple[Path, Path]:
    """Write ``breast_demo_guest.csv`` and ``breast_demo_host.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x, y = load_breast_cancer(return_X_y=True)
    n = len(y)
    rng = np.random.default_rng(seed)
    # Two disjoint sets of ids, each present on one side only.
    dropped = rng.permutation(n)[: 2 * round(ONE_SIDED_FRACTION * n)]
    guest_only, host_only = np.array_split(dropped, 2)
    guest_ids = rng.permutation(np.setdiff1d(np.arange(n), host_only))
    host_ids = rng.permutation(np.setdiff1d(np.arange(n), guest_only))

    guest_path, host_path = out / "breast_demo_guest.csv", out / "breast_demo_host.csv"
    _write(
        guest_path,
        ["id", "y"] + [f"x{j}" for j in range(GUEST_FEATURES)],
        [
            [str(i), str(int(y[i]))] + [repr(float(v)) for v in x[i, :GUEST_FEATURES]]
            for i in guest_ids
        ],
    )
    _write(
        host_path,
        ["id"] + [f"x{j}" for j in range(x.shape[1] - GUEST_FEATURES)],
        [[str(i)] + [repr(float(v)) for v in x[i, GUEST_FEATURES:]] for i in host_ids],
    )
    return guest_path, host_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    ns = parser.parse_args()
    guest, host = make_breast_split(ns.out_dir, seed=ns.seed)
    print(guest)
    print(host)


if __name__ == "__main__":
    main()
