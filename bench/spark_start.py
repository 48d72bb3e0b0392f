"""What a Spark step pays before it computes: starting a ``local[*]`` session (its JVM) and
running a first job, in a fresh process each time, as a step does.

One line per run: ``start_s`` (the session, from the first pyspark import to a usable context),
``first_job_s`` (a one-partition job per executor core: Python workers start, Tessera is
imported there), ``stop_s``, ``executors`` and ``loadavg_1m``. The master is ``--spark-master``
(default ``local[*]``).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any

from bench.common import Options, emit

RUNS = 3


def _one(master: str, results: multiprocessing.Queue[dict[str, Any]]) -> None:
    started = time.monotonic()
    from fedalgo.computing.spark import SparkComputing

    computing = SparkComputing.start(master, min_items=1)
    ready = time.monotonic()
    computing.map_chunks(len, [list(range(computing.executors))])
    ran = time.monotonic()
    executors = computing.executors
    computing.close()
    results.put(
        {
            "start_s": round(ready - started, 2),
            "first_job_s": round(ran - ready, 2),
            "stop_s": round(time.monotonic() - ran, 2),
            "executors": executors,
        }
    )


def run(options: Options) -> None:
    mp = multiprocessing.get_context("spawn")
    for i in range(RUNS):
        results: multiprocessing.Queue[dict[str, Any]] = mp.Queue()
        proc = mp.Process(target=_one, args=(options.spark_master, results))
        proc.start()
        line = results.get(timeout=900)
        proc.join()
        emit(
            {
                "bench": "spark_start",
                "spark_master": options.spark_master,
                "run": i,
                **line,
                "loadavg_1m": round(os.getloadavg()[0], 2),
            },
            options,
        )
