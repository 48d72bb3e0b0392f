"""The vertical benchmarks' data sets: the stored FATE pairs, a three-party split, synthetic sets.

* ``breast``, ``default_credit``: the pre-aligned pairs in ``--data-dir`` (default: the
  repository's ``data/``), as they are.
* ``default_credit_3party``: default_credit's guest file, its host's columns split between two
  hosts (x0..x4 and x5..x9).
* ``synthetic_10k``, ``synthetic_100k``, ``synthetic_1m``, ``synthetic_5m``: generated (seed 0)
  rows of 10 guest and 20 host features, independent standard normals rounded to 6 decimals;
  the label is drawn from a logistic model over all 30 (coefficients N(0, 0.4^2), the same for
  every size; intercept -1, about a third positive), so both parties' features carry signal.

Every set is written to a work directory as one CSV file per party, the guest's first; the joined
matrix (guest's columns, then each host's) and the labels stay in memory for the scikit-learn
reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedalgo.tables import read_dataset

# The repository's data sets (data/README.md): the default of ``--data-dir``.
DATA_DIR = Path(__file__).resolve().parents[1] / "data"
SYNTHETIC_ROWS = {
    "synthetic_10k": 10_000,
    "synthetic_100k": 100_000,
    "synthetic_1m": 1_000_000,
    "synthetic_5m": 5_000_000,
}
SYNTHETIC_GUEST_FEATURES = 10
SYNTHETIC_HOST_FEATURES = 20
SYNTHETIC_SEED = 0
STORED = ("breast", "default_credit")
THREE_PARTY = {"default_credit_3party": ("default_credit", 5)}  # set, host columns of host 1
NAMES = (*STORED, *THREE_PARTY, *SYNTHETIC_ROWS)
# Left out of a run without --dataset (make bench; make bench-large runs them): see bench/README.md.
ONLY_BY_NAME = frozenset({"synthetic_1m", "synthetic_5m"})


@dataclass(frozen=True)
class VerticalData:
    """One data set laid out for the parties: the guest's file, each host's, and the join."""

    name: str
    guest: Path
    hosts: list[Path]
    guest_features: int
    host_features: list[int]
    x: np.ndarray
    y: np.ndarray

    @property
    def rows(self) -> int:
        return len(self.y)


def load(name: str, data_dir: Path, work_dir: Path) -> VerticalData:
    """The data set ``name`` (one of :data:`NAMES`); generated files go to ``work_dir``."""
    if name in STORED:
        return _stored(name, data_dir)
    if name in THREE_PARTY:
        source, first = THREE_PARTY[name]
        return _split_host(name, _stored(source, data_dir), first, work_dir)
    if name in SYNTHETIC_ROWS:
        return synthetic(name, SYNTHETIC_ROWS[name], work_dir)
    raise ValueError(f"unknown data set {name!r} ({', '.join(NAMES)})")


def _stored(name: str, data_dir: Path) -> VerticalData:
    guest = data_dir / f"{name}_hetero_guest.csv"
    host = data_dir / f"{name}_hetero_host.csv"
    for path in (guest, host):
        if not path.is_file():
            raise SystemExit(f"bench: no {path} (use --data-dir)")
    g, h = read_dataset(guest, with_label=True), read_dataset(host, with_label=False)
    assert g.y is not None and g.ids == h.ids, "the stored data sets are pre-aligned"
    return VerticalData(
        name, guest, [host], g.x.shape[1], [h.x.shape[1]], np.hstack([g.x, h.x]), g.y
    )


def _split_host(name: str, data: VerticalData, first: int, work_dir: Path) -> VerticalData:
    """``data`` with its single host's columns split: ``first`` to host 1, the rest to host 2."""
    (host,) = data.hosts
    with host.open() as fh:
        lines = fh.read().splitlines()
    hosts = [work_dir / f"{name}_host1.csv", work_dir / f"{name}_host2.csv"]
    # Column 0 is the id, which both hosts keep.
    for path, columns in ((hosts[0], slice(1, 1 + first)), (hosts[1], slice(1 + first, None))):
        with path.open("w") as out:
            for line in lines:
                cells = line.split(",")
                out.write(",".join([cells[0], *cells[columns]]) + "\n")
    total = data.host_features[0]
    return VerticalData(
        name, data.guest, hosts, data.guest_features, [first, total - first], data.x, data.y
    )


def synthetic_coefficients() -> np.ndarray:
    """The logistic model's coefficients, guest's then host's; the same for every size."""
    rng = np.random.default_rng(SYNTHETIC_SEED)
    return rng.normal(0.0, 0.4, size=SYNTHETIC_GUEST_FEATURES + SYNTHETIC_HOST_FEATURES)


def synthetic_arrays(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): ``rows`` rows of the joined synthetic features and their labels."""
    coef = synthetic_coefficients()
    rng = np.random.default_rng([SYNTHETIC_SEED, rows])
    x = rng.standard_normal((rows, len(coef))).round(6)
    p = 1.0 / (1.0 + np.exp(-(x @ coef - 1.0)))
    y = (rng.random(rows) < p).astype(np.int64)
    return x, y


def synthetic(name: str, rows: int, work_dir: Path) -> VerticalData:
    x, y = synthetic_arrays(rows)
    ids = np.arange(rows)
    g = SYNTHETIC_GUEST_FEATURES
    guest, host = work_dir / f"{name}_guest.csv", work_dir / f"{name}_host.csv"
    _write_csv(guest, ["id", "y", *_names(g)], [ids, y], x[:, :g])
    _write_csv(host, ["id", *_names(SYNTHETIC_HOST_FEATURES)], [ids], x[:, g:])
    return VerticalData(name, guest, [host], g, [SYNTHETIC_HOST_FEATURES], x, y)


def _names(count: int) -> list[str]:
    return [f"x{i}" for i in range(count)]


def _write_csv(path: Path, header: list[str], ints: list[np.ndarray], floats: np.ndarray) -> None:
    fmt = ",".join(["%d"] * len(ints) + ["%.6f"] * floats.shape[1])
    table = np.column_stack([*(col.astype(np.float64) for col in ints), floats])
    np.savetxt(path, table, fmt=fmt, header=",".join(header), comments="")
