"""The encryption and histogram phases on a real Spark standalone cluster of one worker, then
of two (one core each), started here from the pyspark distribution's own ``spark-class``.

Each phase is what SecureBoost does with a tree's rows: the guest's Paillier encryption of one
packed gradient per row (``Computing.encrypt_encoded``, 2048-bit key) and the host's encrypted
histogram of the root (``fedalgo.histogram.node_bin_sums`` over rows distributed to the
executors: 20 columns of 32 bins). One line per cluster size: ``workers``, ``executors``,
``rows``, ``encrypt_s``, ``histogram_s`` (each the best of ``REPEATS``, after a warm-up that
starts the Python workers and builds the encryptor's tables) and ``loadavg_1m``; then a line
with the ratios one worker / two workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Options, emit

ROWS = 10_000
COLUMNS, BINS = 20, 32
REPEATS = 2
START_TIMEOUT_S = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive_workers(ui_url: str) -> int:
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=5) as resp:
            return int(json.load(resp).get("aliveworkers", 0))
    except OSError:
        return -1


@contextlib.contextmanager
def standalone_cluster(workers: int) -> Iterator[str]:
    """A master and ``workers`` one-core workers on 127.0.0.1; yields the master URL."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_DAEMON_MEMORY": "256m",
    }
    port, ui_port = _free_port(), _free_port()
    master, ui = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        root = Path(tmp)

        def start(name: str, args: list[str]) -> subprocess.Popen[bytes]:
            log = (root / f"{name}.log").open("wb")
            cmd = [str(home / "bin" / "spark-class"), *args]
            return subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

        master_args = ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        master_args += ["--port", str(port), "--webui-port", str(ui_port)]
        procs = [start("master", master_args)]
        try:
            for i in range(workers):
                (root / f"w{i}").mkdir()
                args = ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1"]
                args += ["--cores", "1", "--memory", "2g", "--webui-port", str(_free_port())]
                args += ["--work-dir", str(root / f"w{i}"), master]
                procs.append(start(f"worker{i}", args))
            deadline = time.monotonic() + START_TIMEOUT_S
            while _alive_workers(ui) < workers:
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"the Spark cluster did not start (logs in {root})")
                time.sleep(1)
            yield master
        finally:
            for proc in procs:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(timeout=60)


def _best(fn: Any) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.monotonic()
        fn()
        times.append(time.monotonic() - started)
    return min(times)


def _phases(master: str, workers: int) -> dict[str, Any]:
    from fedalgo import paillier
    from fedalgo.computing.spark import SparkComputing
    from fedalgo.histogram import limb_rows, node_bin_sums
    from fedcore import codec

    public_key, private_key = paillier.generate_keypair(2048)
    encryptor = paillier.Encryptor(public_key, private_key=private_key)
    rng = np.random.default_rng(0)
    plaintexts = [int(v) for v in rng.integers(0, 2**62, ROWS)]
    flat = rng.integers(0, BINS, (ROWS, COLUMNS)) + np.arange(COLUMNS) * BINS
    nsq = public_key.nsquare
    conf = {"spark.cores.max": str(workers), "spark.executor.memory": "1g"}
    with SparkComputing.start(master, conf) as computing:
        spec = encryptor.spec()
        computing.encrypt_encoded(spec, plaintexts[: 4 * computing.executors])  # warm-up
        encoded = computing.encrypt_encoded(spec, plaintexts)
        encrypt_s = _best(lambda: computing.encrypt_encoded(spec, plaintexts))
        cts = codec.unpackb(codec.packb(encoded), int_arrays=True)  # as the host receives them
        rows = np.arange(ROWS)
        gh = computing.distribute([rows, cts, flat]).map(limb_rows, nsq)
        root = np.zeros(ROWS, dtype=np.int32)
        total = COLUMNS * BINS
        node_bin_sums(gh, root, [0], total, nsq)  # warm-up
        histogram_s = _best(lambda: node_bin_sums(gh, root, [0], total, nsq))
        executors = computing.executors
    return {
        "bench": "spark_phases",
        "spark_master": "standalone",
        "workers": workers,
        "executors": executors,
        "rows": ROWS,
        "encrypt_s": round(encrypt_s, 2),
        "histogram_s": round(histogram_s, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def run(options: Options) -> None:
    lines = {}
    for workers in (1, 2):
        with standalone_cluster(workers) as master:
            lines[workers] = _phases(master, workers)
        emit(lines[workers], options)
    emit(
        {
            "bench": "spark_phases",
            "ratio_encrypt_1_over_2": round(lines[1]["encrypt_s"] / lines[2]["encrypt_s"], 2),
            "ratio_histogram_1_over_2": round(lines[1]["histogram_s"] / lines[2]["histogram_s"], 2),
        },
        options,
    )
