"""What every benchmark shares: the options, emitting results, resource figures."""

from __future__ import annotations

import json
import resource
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Options:
    dataset: str | None
    data_dir: Path
    out: Path | None
    engine: str = "local"  # the vertical benchmarks' computing engine: local or spark
    spark_master: str = "local[*]"
    spark_submit_args: str = ""  # every party's (its operator's SPARK_SUBMIT_ARGS)
    database: str = "sqlite"  # dashboard_start: the dashboard's database, sqlite or postgresql
    against: Path | None = None  # bridge_compare: the other checkout
    rounds: int = 12  # bridge_compare: rounds of both pairs


def emit(result: dict[str, Any], options: Options) -> None:
    """Print one JSON object on its own line (and append it to ``--out``)."""
    line = json.dumps(result, sort_keys=False)
    print(line, flush=True)
    if options.out is not None:
        with options.out.open("a") as fh:
            fh.write(line + "\n")


def peak_rss_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its (pool) children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 / 1024  # KiB on Linux
    return {
        "peak_rss_mb": round(own * scale, 1),
        "children_peak_rss_mb": round(children * scale, 1),
    }
