"""A real HDFS for the tests: Hadoop's MiniDFSCluster (a NameNode and a DataNode in one JVM),
its jars fetched from Maven Central once (``deploy/hdfs/pom.xml``, as the Kafka broker's are).

A plain module (not conftest) so test modules can import the fixture unambiguously.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brokers import free_port

HDFS_DIR = Path(__file__).resolve().parents[1] / "deploy" / "hdfs"
START_TIMEOUT_S = 300.0


def _jars() -> Path:
    lib = HDFS_DIR / "lib"
    if not (lib / ".complete").exists():
        subprocess.run(
            [
                *("mvn", "-q", "-B", "dependency:copy-dependencies"),
                *(f"-DoutputDirectory={lib}", "-DincludeScope=runtime"),
            ],
            cwd=HDFS_DIR,
            check=True,
        )
        (lib / ".complete").touch()
    return lib


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def hdfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``hdfs://127.0.0.1:PORT``: a freshly formatted HDFS with one DataNode."""
    lib = _jars()
    root = tmp_path_factory.mktemp("hdfs")
    port = free_port()
    ready = root / "hdfs-site.xml"  # written once the NameNode and its DataNode are up
    classpath = ":".join(str(j) for j in sorted(lib.glob("*.jar")))
    log = (root / "hdfs.log").open("wb")
    proc = subprocess.Popen(
        [
            *("java", "-Xmx512m", "-cp", classpath, "org.apache.hadoop.test.MiniDFSClusterManager"),
            *("-format", "-datanodes", "1", "-nnport", str(port), "-writeConfig", str(ready)),
        ],
        cwd=root,  # its data goes under ./target
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (ready.exists() and _answers(port)):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"HDFS did not start:\n{(root / 'hdfs.log').read_text()[-2000:]}")
            time.sleep(1)
        yield f"hdfs://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
