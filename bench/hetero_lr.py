"""hetero_lr on the shared vertical data sets (see bench.vertical), beside scikit-learn's
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
PARAMS: dict[str, dict[str, Any]] = {
    "breast": {
        "key-bits": 2048,
        "max-iter": 10,
        "learning-rate": 0.15,
        "batch-size": 64,
        "random-seed": 0,
        "tol": 0,
    },
    "default_credit": {
        "key-bits": 2048,
        "max-iter": 10,
        "learning-rate": 0.3,
        "batch-size": 3200,
        "random-seed": 0,
        "tol": 0,
    },
}


def _logistic_regression(_params: dict[str, Any]) -> vertical.Reference:
    def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return LogisticRegression(max_iter=1000).fit(x, y).decision_function(x)

    return fit


def run(options: Options) -> None:
    vertical.run_all("hetero_lr", PARAMS, options, _logistic_regression, timeout_s=3600)
