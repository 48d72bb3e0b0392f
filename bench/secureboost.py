"""hetero_secureboost on the vertical data sets (see :mod:`bench.datasets`), beside
scikit-learn's GradientBoostingClassifier on the joined data with the same trees, depth and
learning rate.

The data sets are already aligned (same ids, same order), so the run is hetero_secureboost alone;
AUC and KS are of the guest's training predictions. The parties share the machine's cores, so
``wall_s`` counts the guest's encryption and the hosts' histograms one after the other.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

from bench import vertical
from bench.common import Options

# FATE's benchmark settings: 10 trees on breast, 30 trees of depth 3 with 32 bins on
# default_credit; learning rate 0.3 (FATE's default) for both.
_DEFAULT_CREDIT = {
    "key-bits": 2048,
    "num-trees": 30,
    "max-depth": 3,
    "learning-rate": 0.3,
    "bins": 32,
    "random-seed": 0,
}
# The scaling series: every tree encrypts one ciphertext per row, so 3 trees keep the 1M-row run
# near half an hour on two cores; the rest as on default_credit.
_SYNTHETIC = {**_DEFAULT_CREDIT, "num-trees": 3}
PARAMS: dict[str, dict[str, Any]] = {
    "breast": {
        "key-bits": 2048,
        "num-trees": 10,
        "max-depth": 3,
        "learning-rate": 0.3,
        "bins": 32,
        "random-seed": 0,
    },
    "default_credit": _DEFAULT_CREDIT,
    "default_credit_3party": _DEFAULT_CREDIT,
    "synthetic_10k": _SYNTHETIC,
    "synthetic_100k": _SYNTHETIC,
    "synthetic_1m": _SYNTHETIC,
}


def _gradient_boosting(params: dict[str, Any]) -> vertical.Reference:
    settings = {
        "n_estimators": params["num-trees"],
        "max_depth": params["max-depth"],
        "learning_rate": params["learning-rate"],
        "random_state": 0,
    }

    def fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return GradientBoostingClassifier(**settings).fit(x, y).predict_proba(x)[:, 1]

    described = ", ".join(f"{k}={v}" for k, v in settings.items())
    return vertical.Reference(f"GradientBoostingClassifier({described})", fit)


def run(options: Options) -> None:
    vertical.run_all(
        "hetero_secureboost",
        PARAMS,
        options,
        _gradient_boosting,
        timeout_s=4 * 3600,
    )
