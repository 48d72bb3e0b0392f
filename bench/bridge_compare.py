"""Bridge comparison: this checkout's bridges against another checkout's, measured in turns.

``python -m bench bridge_compare --against DIR [--rounds N]`` starts two pairs of parties as
``bench bridge`` does (each pair its own two brokers and two bridges): one pair runs this tree's
``federation_bridge``, the other DIR's (e.g. ``git worktree add /tmp/before <commit>``), both with
this virtualenv's packages. One process drives both: after a warm-up of each, every round runs
``bench bridge``'s latency and throughput measurements on both pairs, in a random order, within
about twenty seconds. Both trees thus see the same machine load, and the ratio of a round cancels
most of it: on the shared two-core machine single ``bench bridge`` runs spread by ±30 %, far more
than the 10 % such a comparison has to resolve.

Prints one JSON line per round and pair, then a summary line: for each figure, each tree's median
and the geometric mean of the per-round ratios (this tree / DIR) with its 95 % confidence interval.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from bench.bridge import _latency, _Party, _throughput, _warm_up, start_pair, stop_pair
from bench.common import Options, emit
from fedcore import topics
from fedcore.bus import Bus, ensure_topics
from fedcore.envelope import Envelope

THIS, OTHER = "this", "against"
FIGURES = ("mb_per_s", "p50_ms", "p99_ms")


async def _rounds(
    pairs: dict[str, tuple[_Party, _Party]], rounds: int, options: Options
) -> dict[str, dict[str, list[float]]]:
    figures: dict[str, dict[str, list[float]]] = {
        name: {figure: [] for figure in FIGURES} for name in pairs
    }
    async with AsyncExitStack() as stack:
        io: dict[str, tuple[Bus, AsyncIterator[Envelope]]] = {}
        for name, (a, b) in pairs.items():
            await ensure_topics(b.bootstrap)
            since_ms = int(time.time() * 1000)
            subscription = await stack.enter_async_context(
                Bus(b.bootstrap, client_id=f"bench-consumer-{name}").subscribe(
                    [topics.IN_FED], group_id=None, start_time_ms=since_ms
                )
            )
            bus = await stack.enter_async_context(Bus(a.bootstrap, client_id=f"bench-{name}"))
            received = aiter(subscription)
            await _warm_up(bus, received)
            io[name] = (bus, received)
        for number in range(rounds):
            order = list(pairs)
            random.shuffle(order)
            for name in order:
                bus, received = io[name]
                latency = await _latency(bus, received)
                throughput = await _throughput(bus, received)
                row = {
                    "mb_per_s": throughput["mb_per_s"],
                    "p50_ms": latency["p50_ms"],
                    "p99_ms": latency["p99_ms"],
                }
                for figure, value in row.items():
                    figures[name][figure].append(value)
                line = {"bench": "bridge_compare", "round": number, "tree": name, **row}
                emit({**line, "loadavg_1m": round(os.getloadavg()[0], 2)}, options)
    return figures


def summary(figures: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Per figure: each tree's median and the geometric mean of the per-round ratios
    (this / against) with a 95 % confidence interval (normal, on the logarithms)."""
    out: dict[str, Any] = {}
    for figure in FIGURES:
        this, other = figures[THIS][figure], figures[OTHER][figure]
        logs = [math.log(x / y) for x, y in zip(this, other, strict=True)]
        mean = statistics.fmean(logs)
        half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else math.inf
        out[figure] = {
            THIS: round(statistics.median(this), 2),
            OTHER: round(statistics.median(other), 2),
            "ratio": round(math.exp(mean), 3),
            "ratio_95ci": [round(math.exp(mean - half), 3), round(math.exp(mean + half), 3)],
        }
    return out


def run(options: Options) -> None:
    if options.against is None:
        raise SystemExit("bench bridge_compare: --against DIR (another checkout) is required")
    against = options.against.resolve()
    if not (against / "services" / "federation_bridge").is_dir():
        raise SystemExit(f"bench bridge_compare: {against} is not a Tessera checkout")
    root = Path(tempfile.mkdtemp(prefix="tessera-bench-compare-"))
    pairs: dict[str, tuple[_Party, _Party]] = {}
    try:
        pairs[THIS] = start_pair(root / THIS)
        pairs[OTHER] = start_pair(root / OTHER, against)
        figures = asyncio.run(_rounds(pairs, options.rounds, options))
    finally:
        for a, b in pairs.values():
            stop_pair(a, b)
    emit(
        {
            "bench": "bridge_compare",
            "against": str(against),
            "rounds": options.rounds,
            "figures": summary(figures),
            "cpus": os.cpu_count(),
        },
        options,
    )
    shutil.rmtree(root, ignore_errors=True)
