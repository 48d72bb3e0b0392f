"""A real Spark standalone cluster for the tests: one master and its workers, started from the
pyspark distribution's own ``spark-class`` (as the Kafka brokers are started from their jars).

A plain module (not conftest) so test modules can import the fixture unambiguously.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from brokers import free_port

START_TIMEOUT_S = 180.0
WORKERS = 2


@dataclass(frozen=True)
class SparkCluster:
    master_url: str
    ui_url: str
    workers: int


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent


def _daemon(root: Path, name: str, args: list[str]) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_DAEMON_MEMORY": "256m",
    }
    log = (root / f"{name}.log").open("wb")
    return subprocess.Popen(
        [str(spark_home() / "bin" / "spark-class"), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _alive_workers(ui_url: str) -> int:
    try:
        with urllib.request.urlopen(f"{ui_url}/json/", timeout=5) as resp:
            return int(json.load(resp).get("aliveworkers", 0))
    except OSError:
        return -1


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkCluster]:
    """A master and ``WORKERS`` workers of one core each on 127.0.0.1."""
    root = tmp_path_factory.mktemp("spark")
    port, ui_port = free_port(), free_port()
    cluster = SparkCluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}", WORKERS)
    procs = [
        _daemon(
            root,
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui_port)),
            ],
        )
    ]
    try:
        for i in range(WORKERS):
            work = root / f"worker{i}"
            work.mkdir()
            args = ["org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1"]
            args += ["--cores", "1", "--memory", "1g", "--webui-port", str(free_port())]
            args += ["--work-dir", str(work), cluster.master_url]
            procs.append(_daemon(root, f"worker{i}", args))
        deadline = time.monotonic() + START_TIMEOUT_S
        while _alive_workers(cluster.ui_url) < WORKERS:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                logs = "\n".join(p.read_text()[-2000:] for p in root.glob("*.log"))
                pytest.fail(f"the Spark cluster did not start:\n{logs}")
            time.sleep(1)
        yield cluster
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
