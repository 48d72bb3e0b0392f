"""A whole job survives bridge faults: the two-party stack as real processes on real brokers.

The example hetero-LR job runs while party 20000's bridge is SIGKILLed during training and started
again, then while it is stopped for 30 s (issue #5's done-criterion); both jobs must end
``success`` on both parties, and every federation record of the job must have been produced once
on each side (counted by message id and chunk on the inbound topics).

The parties run with the default settings: nothing of a job's own clock runs out while a peer's
bridge is away (no heartbeat crosses the bridge; a step waiting for a peer's message is bounded
only by its task timeout), records wait in Kafka, and the sender's retries are capped at
``BRIDGE_RETRY_MAX_S``, so delivery resumes within that long of the bridge's return.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from e2e_stack import GUEST, HOST, TwoParties

from fedcore import topics
from fedcore.bus import header, partitions
from tessera.example import PIPELINE_YAML
from tessera.sdk import ApiError, JobDetail, Tessera
from tessera.stack import Party

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 480.0
BRIDGE = "federation_bridge"
# issue #5's done-criterion: the peer's bridge is stopped this long while the job runs
OUTAGE_S = 30.0


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


# what happens to the host's bridge once train runs: given the guest's client and the job id
Fault = Callable[[Tessera, str], None]


def _run_job_with(parties: TwoParties, fault: Fault) -> tuple[str, JobDetail, JobDetail]:
    with parties.flow(GUEST) as guest, parties.flow(HOST) as host:
        pipeline_id = guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        job_id = guest.submit_job(pipeline_id, parties.job_text().encode()).job_id
        _wait_for_step(guest, job_id, "train")
        fault(guest, job_id)
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
    two_parties: TwoParties, kafka_pair: tuple[Any, Any]
) -> None:
    party = two_parties.processes(HOST)

    def kill_and_restart(_guest: Tessera, _job_id: str) -> None:
        pid = party.services[BRIDGE].pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        time.sleep(3)
        _restart_bridge(party, two_parties.stack.workdir)

    job_id, guest, host = _run_job_with(two_parties, kill_and_restart)
    _assert_success_exactly_once(kafka_pair, job_id, guest, host)


def test_a_job_survives_the_host_bridge_being_down_for_30_s(
    two_parties: TwoParties, kafka_pair: tuple[Any, Any]
) -> None:
    party = two_parties.processes(HOST)

    def stop_wait_start(guest: Tessera, job_id: str) -> None:
        party.services[BRIDGE].stop(grace_s=10)
        time.sleep(OUTAGE_S)
        job = guest.job(job_id)  # the job could not go on without the host's bridge
        assert not job.finished, f"the job ended while the host's bridge was down: {job.state}"
        _restart_bridge(party, two_parties.stack.workdir)

    job_id, guest, host = _run_job_with(two_parties, stop_wait_start)
    _assert_success_exactly_once(kafka_pair, job_id, guest, host)
