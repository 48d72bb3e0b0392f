"""Logistic-regression arithmetic shared by the parties: link, loss and the mini-batch schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fedalgo.computing import Computing


def sigmoid(u: np.ndarray) -> np.ndarray:
    # exp(-log(1 + exp(-u))) never overflows, unlike 1 / (1 + exp(-u)) for large negative u.
    return np.exp(-np.logaddexp(0.0, -u))


def log_loss_sum(u: np.ndarray, y: np.ndarray) -> float:
    """Sum over samples of -log p(y | u) for logits ``u``."""
    return float(np.sum(np.logaddexp(0.0, u) - y * u))


def batches(n_samples: int, batch_size: int, *, seed: int, epoch: int) -> list[np.ndarray]:
    """The row indices of each mini-batch of ``epoch``; one batch of all rows when
    ``batch_size`` is -1 or at least ``n_samples``.

    Every party derives the same batches from the shared seed. The shuffle sorts raw PCG64 output,
    which NumPy keeps stable across versions (``Generator.permutation`` is not guaranteed to be),
    so parties on different NumPy releases still agree.
    """
    if batch_size == -1 or batch_size >= n_samples:
        return [np.arange(n_samples)]
    bit_gen = np.random.PCG64(np.random.SeedSequence([seed, epoch]))
    order = np.argsort(bit_gen.random_raw(n_samples), kind="stable")
    return [order[i : i + batch_size] for i in range(0, n_samples, batch_size)]


def smallest_batch(n_samples: int, batch_size: int) -> int:
    """The fewest rows any mini-batch of :func:`batches` holds (the last one may be short)."""
    if batch_size == -1 or batch_size >= n_samples:
        return n_samples
    return n_samples % batch_size or batch_size


def learning_rate(base: float, decay: float, epoch: int) -> float:
    """Inverse-time decay: ``base / (1 + decay * epoch)``; ``decay=0`` keeps it constant."""
    return base / (1.0 + decay * epoch)


def linear(x: np.ndarray, weights: np.ndarray, computing: Computing | None = None) -> np.ndarray:
    """``x @ weights``, long inputs a share of the rows per ``computing`` worker."""
    if computing is not None and computing.splits(x.size):
        return np.concatenate(computing.map_chunks(_dot, [x], weights))
    return _dot(x, weights)


def _dot(rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return rows @ weights
