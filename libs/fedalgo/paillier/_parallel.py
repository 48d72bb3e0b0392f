"""gmpy2's list functions release the GIL, so long lists are split over a few threads."""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gmpy2

_MIN_CHUNK = 16


def powmod_base_list(bases: list[Any], exponent: Any, modulus: Any) -> list[Any]:
    """``[powmod(b, exponent, modulus) for b in bases]`` on every core."""
    workers = min(os.cpu_count() or 1, math.ceil(len(bases) / _MIN_CHUNK))
    if workers <= 1:
        return list(gmpy2.powmod_base_list(bases, exponent, modulus))
    size = math.ceil(len(bases) / workers)
    chunks = [bases[i : i + size] for i in range(0, len(bases), size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda c: gmpy2.powmod_base_list(c, exponent, modulus), chunks)
        return [x for part in parts for x in part]
