"""Shared helpers for the fedalgo tests: party specs, CSV access, a plaintext LR reference that
shares no code with fedalgo."""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GUEST, HOST, HOST2 = "10000", "20000", "30000"


def load_demo_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "make_demo_data", ROOT / "examples" / "make_demo_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def party(
    role: str,
    out_dir: Path,
    outputs: tuple[str, ...],
    args: dict[str, Any] | None = None,
    **inputs: Path,
) -> dict[str, Any]:
    """One entry of ``run_parties``' party specs, writing outputs under ``out_dir``."""
    return {
        "role": role,
        "args": args or {},
        "inputs": inputs,
        "outputs": {name: out_dir / name for name in outputs},
    }


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([[str(v) for v in row] for row in rows])
    return path


def read_matrix(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(header, ids, all non-id columns as floats)."""
    header, rows = read_rows(path)
    ids = [r[0] for r in rows]
    values = np.array([[float(v) for v in r[1:]] for r in rows]).reshape(len(rows), len(header) - 1)
    return header, ids, values


# A plaintext, centralised reimplementation of hetero_lr's training, to check the federated one.
# It shares no code with fedalgo: the link, the loss, the step size and the batch order are
# written out here from their definitions (docs/architecture.md, fedalgo/logistic.py's docstrings),
# and test_hetero_lr checks it against scikit-learn's LogisticRegression.


def sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * u))  # = 1 / (1 + e^-u), without overflow


def log_loss_sum(u: np.ndarray, y: np.ndarray) -> float:
    """Sum of -log p(y | logit u) = log(1 + e^u) - y u, computed stably."""
    return float(np.sum(np.maximum(u, 0.0) + np.log1p(np.exp(-np.abs(u))) - y * u))


def batch_order(n_samples: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The protocol's mini-batches: rows ordered by PCG64's raw output for (seed, epoch)."""
    if batch_size == -1 or batch_size >= n_samples:
        return [np.arange(n_samples)]
    raw = np.random.PCG64(np.random.SeedSequence([seed, epoch])).random_raw(n_samples)
    order = np.argsort(raw, kind="stable")
    return [order[start : start + batch_size] for start in range(0, n_samples, batch_size)]


@dataclass
class Reference:
    w_guest: np.ndarray
    w_hosts: list[np.ndarray]
    intercept: float
    losses: list[float]

    def scores(self, x_guest: np.ndarray, x_hosts: list[np.ndarray]) -> np.ndarray:
        u = x_guest @ self.w_guest + self.intercept
        return sigmoid(u + sum(x @ w for x, w in zip(x_hosts, self.w_hosts, strict=True)))


def train(
    x_guest: np.ndarray,
    x_hosts: list[np.ndarray],
    y: np.ndarray,
    *,
    learning_rate_: float = 0.15,
    max_iter: int = 30,
    alpha: float = 0.01,
    batch_size: int = -1,
    decay: float = 0.0,
    tol: float = 0.0,
    seed: int = 0,
) -> Reference:
    """Mini-batch gradient descent on the mean log loss + alpha/2 |w|^2 (intercept unpenalised),
    step size ``learning_rate_ / (1 + decay * epoch)``; stops when an epoch's loss moved less than
    ``tol``. The loss it records per epoch is what the guest reports: the guest's own penalty only
    (it never sees the hosts' weights)."""
    wg = np.zeros(x_guest.shape[1])
    wh = [np.zeros(x.shape[1]) for x in x_hosts]
    b = 0.0
    losses: list[float] = []
    for epoch in range(max_iter):
        step = learning_rate_ / (1.0 + decay * epoch)
        total = 0.0
        for idx in batch_order(len(y), batch_size, seed, epoch):
            u = x_guest[idx] @ wg + b + sum(x[idx] @ w for x, w in zip(x_hosts, wh, strict=True))
            d = sigmoid(u) - y[idx]
            total += log_loss_sum(u, y[idx])
            wg = wg - step * (x_guest[idx].T @ d / len(idx) + alpha * wg)
            wh = [
                w - step * (x[idx].T @ d / len(idx) + alpha * w)
                for x, w in zip(x_hosts, wh, strict=True)
            ]
            b -= step * float(d.mean())
        losses.append(total / len(y) + 0.5 * alpha * float(wg @ wg))
        if tol > 0 and len(losses) > 1 and abs(losses[-2] - losses[-1]) < tol:
            break
    return Reference(wg, wh, b, losses)
