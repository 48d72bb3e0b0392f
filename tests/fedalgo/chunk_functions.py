"""Chunk functions for the computing tests: module-level, as the engines need, in a module of its
own that the Spark fixture ships to the executors (``addPyFile``)."""

from __future__ import annotations

from typing import Any

import numpy as np


def sum_rows(rows: np.ndarray, big: list[int], small: np.ndarray, weight: int) -> int:
    return weight * (int(rows.sum()) + sum(big) + int(small.sum()))


def square(rows: np.ndarray, big: list[int], small: np.ndarray) -> tuple[Any, ...]:
    return rows, [b * b for b in big], small * 2


def add(a: int, b: int) -> int:
    return a + b


def second(rows: np.ndarray, values: Any) -> Any:
    return values
