"""bench bridge_compare's summary: per-round ratios, not ratios of medians, with their interval.

(The benchmark itself starts four brokers and runs for minutes: it is run by hand, never here.)
"""

from __future__ import annotations

import math

import pytest
from bench.bridge_compare import OTHER, THIS, summary


def _figures(this: list[float], other: list[float]) -> dict[str, dict[str, list[float]]]:
    return {
        THIS: {"mb_per_s": this, "p50_ms": this, "p99_ms": this},
        OTHER: {"mb_per_s": other, "p50_ms": other, "p99_ms": other},
    }


def test_a_constant_ratio_under_a_varying_load_is_found_exactly() -> None:
    # the load halves and doubles the figures from round to round; each round's ratio is 0.9
    other = [40.0, 20.0, 80.0, 30.0, 55.0]
    out = summary(_figures([0.9 * x for x in other], other))["mb_per_s"]
    assert out["ratio"] == pytest.approx(0.9)
    assert out["ratio_95ci"] == [pytest.approx(0.9), pytest.approx(0.9)]
    assert out[THIS] == pytest.approx(0.9 * 40.0) and out[OTHER] == 40.0


def test_the_interval_is_the_geometric_mean_of_the_rounds_plus_minus_two_standard_errors() -> None:
    this, other = [44.0, 36.0, 50.0, 41.0], [40.0, 40.0, 40.0, 40.0]
    logs = [math.log(t / o) for t, o in zip(this, other, strict=True)]
    mean = sum(logs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 3)
    out = summary(_figures(this, other))["p99_ms"]
    assert out["ratio"] == pytest.approx(math.exp(mean), abs=1e-3)
    low, high = out["ratio_95ci"]
    assert low == pytest.approx(math.exp(mean - 1.96 * sd / 2), abs=1e-3)
    assert high == pytest.approx(math.exp(mean + 1.96 * sd / 2), abs=1e-3)
    assert low < 1.0 < high
