"""hetero_lr on the vertical data sets (see :mod:`bench.datasets`), beside scikit-learn's
LogisticRegression on the joined data.

The data sets are already aligned (same ids, same order) and standardised, so the run is
hetero_lr alone; AUC and KS are of the guest's training predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bench import vertical
from bench.common import Options

# The target run: 2048-bit keys, 10 epochs. Mini-batches converge in fewer epochs than
# full batches (default_credit's 3200 rows are enough for the pool to split each fold); the rest
# are the component's defaults.
_DEFAULT_CREDIT = {
    "key-bits": 2048,
    "max-iter": 10,
    "learning-rate": 0.3,
    "batch-size": 3200,
    "random-seed": 0,
    "tol": 0,
}
# The scaling series: 3 epochs keep the 1M-row run to the one-off encryption of the host's rows
# plus three folds of every row; 4096-row batches are enough for the pool to split each fold.
_SYNTHETIC = {
    "key-bits": 2048,
    "max-iter": 3,
    "learning-rate": 0.3,
    "batch-size": 4096,
    "random-seed": 0,
    "tol": 0,
}
PARAMS: dict[str, dict[str, Any]] = {
    "breast": {
        "key-bits": 2048,
        "max-iter": 10,
        "learning-rate": 0.15,
        "batch-size": 64,
        "random-seed": 0,
        "tol": 0,
    },
    "default_credit": _DEFAULT_CREDIT,
    "default_credit_3party": _DEFAULT_CREDIT,
    "synthetic_10k": _SYNTHETIC,
    "synthetic_100k": _SYNTHETIC,
    "synthetic_1m": _SYNTHETIC,
    "synthetic_5m": _SYNTHETIC,
}


def _logistic_regression(_params: dict[str, Any]) -> vertical.Reference:
    def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return LogisticRegression(max_iter=1000).fit(x, y).decision_function(x)

    return vertical.Reference("LogisticRegression(max_iter=1000)", fit)


def run(options: Options) -> None:
    vertical.run_all(
        "hetero_lr",
        PARAMS,
        options,
        _logistic_regression,
        timeout_s=4 * 3600,
    )
