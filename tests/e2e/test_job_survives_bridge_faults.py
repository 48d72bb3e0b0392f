"""A whole job survives bridge faults: the two-party stack as real processes on real brokers.

The example hetero-LR job runs while party 20000's bridge is SIGKILLed during training and started
again, then while it is stopped for a while; both jobs must end ``success`` on both parties, and
every federation record of the job must have been produced once on each side (counted by message
id and chunk on the inbound topics).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from fedcore import topics
from fedcore.bus import header, partitions
from tessera.envfiles import local_parties, write_env_files
from tessera.example import PIPELINE_YAML, make_demo_data, render_job
from tessera.sdk import ApiError, JobDetail, Tessera
from tessera.stack import Party, Stack

pytestmark = pytest.mark.e2e

GUEST, HOST = "10000", "20000"
JOB_TIMEOUT_S = 480.0
BRIDGE = "federation_bridge"


@dataclass(frozen=True)
class Running:
    stack: Stack
    job_text: str

    def flow(self, party: str) -> Tessera:
        return Tessera(self.stack.party(party).flow_server_url)

    def host(self) -> Party:
        return next(p for p in self.stack.parties if p.party_id == HOST)


@pytest.fixture(scope="module")
def running(
    kafka_pair: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("e2e-faults")
    parties = local_parties([GUEST, HOST], kafka_ports=[b.port for b in kafka_pair])
    env_files = write_env_files(parties, root / "env")
    data = make_demo_data(root / "data")
    with Stack(env_files, start_brokers=False) as stack:
        yield Running(stack, render_job(data, root / "output"))


def _job(flow: Tessera, job_id: str) -> JobDetail | None:
    try:
        return flow.job(job_id)
    except ApiError as exc:
        if exc.status_code == 404:
            return None
        raise


def _wait(flow: Tessera, job_id: str, timeout_s: float) -> JobDetail:
    deadline = time.monotonic() + timeout_s
    while True:
        job = _job(flow, job_id)
        if job is not None and (job.finished or time.monotonic() > deadline):
            return job
        assert time.monotonic() < deadline, f"job {job_id} unknown after {timeout_s} s"
        time.sleep(0.5)


def _wait_for_step(flow: Tessera, job_id: str, step: str, timeout_s: float = 240) -> None:
    """Until ``step`` runs on some party (or the job already ended: the test then says so)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = _job(flow, job_id)
        if job is not None:
            assert not job.finished, f"the job ended before {step} ran: {job.state}"
            if any(t.step == step and t.state == "running" for t in job.tasks):
                return
        time.sleep(0.2)
    raise AssertionError(f"{step} did not start within {timeout_s} s")


def _restart_bridge(party: Party, workdir: Any) -> None:
    proc = party.services[BRIDGE]
    proc.start(party.child_environ(), workdir)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(party.env.health_url(BRIDGE), timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.running(), proc.log_tail()
        time.sleep(0.3)
    raise AssertionError(f"the bridge did not come back:\n{proc.log_tail()}")


async def _inbound_counts(bootstrap: str, job_id: str) -> Counter[tuple[str, str]]:
    """How often each (message id, chunk) of the job was produced into the inbound topics."""
    names = [topics.IN_FED, topics.IN_CTL]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    counts: Counter[tuple[str, str]] = Counter()
    try:
        tps = [
            TopicPartition(t, p)
            for t, ps in (await partitions(bootstrap, names)).items()
            for p in ps
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for r in records:
                    if r.key == job_id.encode():
                        counts[(header(r, "id") or "", header(r, "chunk") or "")] += 1
    finally:
        await consumer.stop()
    return counts


def _run_job_with(running: Running, fault: Any) -> tuple[str, JobDetail, JobDetail]:
    with running.flow(GUEST) as guest, running.flow(HOST) as host:
        pipeline_id = guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        job_id = guest.submit_job(pipeline_id, running.job_text.encode()).job_id
        _wait_for_step(guest, job_id, "train")
        fault()
        guest_job = _wait(guest, job_id, JOB_TIMEOUT_S)
        host_job = _wait(host, job_id, 60.0)
    return job_id, guest_job, host_job


def _assert_success_exactly_once(
    kafka_pair: tuple[Any, Any], job_id: str, guest: JobDetail, host: JobDetail
) -> None:
    for party, job in ((GUEST, guest), (HOST, host)):
        assert job.state == "success", f"party {party}: {job.state}: {job.failure_reason()}"
    for broker in kafka_pair:
        counts = asyncio.run(_inbound_counts(f"127.0.0.1:{broker.port}", job_id))
        assert counts, f"no inbound records of the job on broker {broker.port}"
        twice = {k: n for k, n in counts.items() if n > 1}
        assert not twice, f"records produced more than once on broker {broker.port}: {twice}"


def test_a_job_survives_a_sigkill_of_the_host_bridge_during_training(
    running: Running, kafka_pair: tuple[Any, Any]
) -> None:
    party = running.host()

    def kill_and_restart() -> None:
        pid = party.services[BRIDGE].pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)
        _restart_bridge(party, running.stack.workdir)

    job_id, guest, host = _run_job_with(running, kill_and_restart)
    _assert_success_exactly_once(kafka_pair, job_id, guest, host)


def test_a_job_survives_the_host_bridge_being_down_for_a_while(
    running: Running, kafka_pair: tuple[Any, Any]
) -> None:
    party = running.host()

    def stop_wait_start() -> None:
        party.services[BRIDGE].stop(grace_s=10)
        time.sleep(12)
        _restart_bridge(party, running.stack.workdir)

    job_id, guest, host = _run_job_with(running, stop_wait_start)
    _assert_success_exactly_once(kafka_pair, job_id, guest, host)
