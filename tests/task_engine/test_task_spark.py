"""Steps on Spark through a real worker, broker and bubblewrap sandbox: ``local[2]`` inside the
step's own sandbox, a real standalone cluster (master + two one-core workers) that the party
configured, and a master it did not configure (refused).

The ``scale`` component is the step: one party, no federation, and 300 x 4 values, enough for
its column statistics to go to the executors.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_task_worker import collect, ended, final, running_worker, task_run

from brokers import Broker
from fedcore import topics
from fedcore.bus import Bus
from fedcore.envelope import Envelope
from spark_cluster import SparkCluster, spark_cluster
from task_engine.sandbox import BubblewrapRuntime, SandboxLimits, SparkSandbox
from task_engine.worker import Worker

__all__ = ["spark_cluster"]  # the session fixture, imported for this module's tests

PARTY = "71000"
ROWS, COLUMNS = 300, 4
# The driver of a cluster step runs in the sandbox on the host's network; the executors must
# reach it at an address they can resolve.
DRIVER = "--conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1"


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spark-steps")


@pytest.fixture(scope="module")
def data(state: Path) -> tuple[Path, np.ndarray]:
    x = np.random.default_rng(0).normal(5.0, 2.0, size=(ROWS, COLUMNS))
    path = state / "input.csv"
    lines = ["id," + ",".join(f"x{j}" for j in range(COLUMNS))]
    lines += [f"r{i}," + ",".join(repr(v) for v in row) for i, row in enumerate(x.tolist())]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return path, x


@pytest.fixture(scope="module")
async def bus(kafka: Broker) -> AsyncIterator[Bus]:
    async with Bus(kafka.bootstrap, "test-spark-steps") as bus:
        yield bus


@pytest.fixture(scope="module")
async def worker(kafka: Broker, state: Path, spark_cluster: SparkCluster) -> AsyncIterator[Worker]:
    settings = {"spark_master": spark_cluster.master_url, "spark_submit_args": DRIVER}
    async with running_worker(kafka, PARTY, state, task_timeout_s=300, **settings) as worker:
        yield worker


async def start_scale(bus: Bus, state: Path, data: Path, master: str) -> tuple[Envelope, str]:
    """Run ``scale`` on ``master``: its final status and its job id."""
    job = uuid.uuid4().hex
    args = {"spark-master-name": master}
    inputs = {"data": str(data)}
    run = task_run(job, "scale", "scale", "guest", PARTY, state, args=args, inputs=inputs)
    await bus.publish(topics.TASKS, run)
    return final(await collect(bus, topics.STATUS, job, ended(), timeout_s=300)), job


async def run_scale(
    bus: Bus, state: Path, data: Path, master: str
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run ``scale`` on ``master``: its ``computing`` and ``spark_stages`` metrics, its job id."""
    done, job = await start_scale(bus, state, data, master)
    assert done.body["state"] == "success", done.body["reason"]

    def both(envs: list[Envelope]) -> bool:
        return {"computing", "spark_stages"} <= {e.body["name"] for e in envs}

    metrics = await collect(bus, topics.RESULTS, job, both, timeout_s=30)
    value = {m.body["name"]: m.body["value"] for m in metrics}
    return value["computing"], value["spark_stages"], job


def check_scaled(state: Path, job: str, x: np.ndarray) -> None:
    out = (state / PARTY / job / "scale" / "data").read_text().splitlines()
    scaled = np.array([[float(v) for v in line.split(",")[1:]] for line in out[1:]])
    assert np.allclose(scaled, (x - x.mean(axis=0)) / x.std(axis=0), atol=1e-12)


async def test_a_local_spark_step_runs_inside_its_sandbox(
    worker: Worker, bus: Bus, state: Path, data: tuple[Path, np.ndarray]
) -> None:
    computing, stages, job = await run_scale(bus, state, data[0], "local[2]")
    assert computing == {"engine": "spark", "master": "local[2]", "executors": 2}
    check_scaled(state, job, data[1])
    # The column statistics ran as one job of a stage of two tasks (a chunk per core), timed.
    assert stages["column_stats"]["jobs"] == 1 and stages["column_stats"]["tasks"] == 2
    assert stages["column_stats"]["seconds"] > 0


async def test_a_step_runs_on_the_standalone_cluster_the_party_configured(
    worker: Worker,
    bus: Bus,
    state: Path,
    data: tuple[Path, np.ndarray],
    spark_cluster: SparkCluster,
) -> None:
    computing, _, job = await run_scale(bus, state, data[0], spark_cluster.master_url)
    assert computing["master"] == spark_cluster.master_url
    assert computing["executors"] == spark_cluster.workers  # one core per worker
    check_scaled(state, job, data[1])


async def test_a_master_the_party_did_not_configure_fails_the_step(
    worker: Worker, bus: Bus, state: Path, data: tuple[Path, np.ndarray]
) -> None:
    done, _ = await start_scale(bus, state, data[0], "spark://203.0.113.7:7077")
    assert done.body["state"] == "failed"
    assert "is not the Spark master this party configured" in done.body["reason"]


def test_only_a_configured_cluster_master_gets_the_hosts_network(tmp_path: Path) -> None:
    spark = SparkSandbox(SandboxLimits(memory_mb=6000, max_procs=900), "spark://m:7077")
    runtime = BubblewrapRuntime(state_dir=tmp_path, spark=spark)

    def argv(master: str) -> list[str]:
        return runtime.argv(tmp_path / "w", ["python"], spark_master=master)

    for master, isolated in (("", True), ("local[*]", True), ("spark://other:7077", True)):
        cmd = argv(master)
        assert "--unshare-net" in cmd or ("--unshare-all" in cmd and "--share-net" not in cmd)
        assert isolated
    shared = argv("spark://m:7077")
    assert "--unshare-net" not in shared and (
        "--unshare-all" not in shared or "--share-net" in shared
    )
    assert f"--as={6000 * 1024 * 1024}" in shared and "--nproc=900" in shared
    assert f"--as={6000 * 1024 * 1024}" in argv("local[2]")
    assert "--as=2147483648" in argv("")  # a step without Spark keeps the step limits
