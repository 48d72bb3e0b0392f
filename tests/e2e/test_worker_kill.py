"""End to end: a task_engine killed with SIGKILL while its step runs.

The host's worker dies in the middle of training. Its heartbeats stop, so the host's flow_server
counts the step as lost ("worker lost") once ``HEARTBEAT_TIMEOUT_S`` (20 s here) passes: a platform
fault, which the host's default ``PLATFORM_RETRIES`` (2) reruns at attempt 2 on both parties (the
guest's attempt 1, waiting for the dead host, is stopped) with no retry setting in the job; the
restarted worker takes it and the job ends ``success`` on both parties.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from functools import partial

import httpx
import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties
from test_lifecycle import _ENDED, Lifecycle, _attempts, _state, _training, _until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def party_env() -> Mapping[str, str]:
    # Heartbeats every second, and 20 s of silence before a step counts as lost: a healthy worker
    # beside two Kafka JVMs on a busy machine is never taken for a dead one (which would spend
    # a platform retry), while the dead one is still noticed in well under a minute.
    return {"HEARTBEAT_INTERVAL_S": "1", "HEARTBEAT_TIMEOUT_S": "20"}


@pytest.fixture(scope="module")
def lifecycle(two_parties: TwoParties) -> Lifecycle:
    return Lifecycle.start(two_parties)


def test_a_killed_workers_step_is_retried_and_the_job_succeeds(
    lifecycle: Lifecycle,
) -> None:
    lc, stack = lifecycle, lifecycle.stack
    job = yaml.safe_load(lc.job_text())  # long training
    assert "auto-retries" not in job["common-args"]  # the platform's fault: retried by default
    with lc.flow(GUEST) as guest:
        job_text = yaml.safe_dump(job, sort_keys=False).encode()
        job_id = guest.submit_job(lc.pipeline_id, job_text).job_id
    _until("training runs on both parties", lambda: _training(lc, job_id))
    worker = lc.parties.processes(HOST).services["task_engine"]
    pid = worker.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _until("the host task_engine is gone", lambda: not worker.running(), 30)
    stack.up()  # a new worker, which knows nothing of the dead one's step
    for party in (GUEST, HOST):
        view = _until(f"ended on {party}", partial(_state, lc, party, job_id, *_ENDED), 420)
        assert view.state == "success", view.failure_reason()
        attempts = _attempts(view)
        # the kill cost one platform retry: train ran twice, and nothing else failed
        assert attempts[("train", GUEST)] == attempts[("train", HOST)] == 2, attempts
        assert attempts[("intersect", HOST)] == 1  # only the lost step ran again
    host = lc.parties.processes(HOST)
    assert "worker lost: no heartbeat for" in host.services["flow_server"].log_file.read_text()
    # every service of the party serves /metrics; the host's flow_server counted the lost step
    scraped = {
        name: httpx.get(f"{stack.party(HOST).internal_url(name)}/metrics", timeout=10)
        for name in ("flow_server", "task_engine", "dashboard", "federation_bridge")
    }
    assert all(r.status_code == 200 for r in scraped.values()), scraped
    assert "tessera_flow_server_lost_steps_total 1.0" in scraped["flow_server"].text
    assert 'tessera_flow_server_jobs{state="success"} 1.0' in scraped["flow_server"].text
    assert "tessera_task_engine_running_steps 0.0" in scraped["task_engine"].text
