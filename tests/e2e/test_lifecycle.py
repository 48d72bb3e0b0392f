"""End to end: controlling a running job across two real parties.

Stop, pause, resume and rerun are sent to one party and must reach the other; a failure on the
host fails the job on both parties with the host's reason; a proposal the host cannot accept ends
``rejected``; a flow_server killed with SIGKILL mid-job is restarted and the job still finishes.
Training is made long enough (many iterations, no early stopping) that "during training" is not
a race.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties

from tessera.example import PIPELINE_YAML
from tessera.sdk import ApiError, ConnectionFailed, Dashboard, JobDetail, JobMetrics, Tessera
from tessera.stack import Stack

pytestmark = pytest.mark.e2e

# Long enough to act on a running train step; tol 0 turns early stopping off.
LONG_TRAINING = {"max-iter": 200, "tol": 0}
_ENDED = ("success", "failed", "canceled", "timeout", "rejected")


@dataclass(frozen=True)
class Lifecycle:
    parties: TwoParties
    pipeline_id: str

    @classmethod
    def start(cls, parties: TwoParties) -> Lifecycle:
        """The stack with the example pipeline uploaded to the guest."""
        with parties.flow(GUEST) as guest:
            return cls(parties, guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id)

    @property
    def stack(self) -> Stack:
        return self.parties.stack

    def flow(self, party: str) -> Tessera:
        return self.parties.flow(party)

    def job_text(self, *, host_args: dict[str, Any] | None = None) -> bytes:
        job = yaml.safe_load(self.parties.job_text())
        job["common-args"].update(LONG_TRAINING)
        for key, args in job["parties-args"].items():
            if str(key) == HOST:
                args.update(host_args or {})
        return yaml.safe_dump(job, sort_keys=False).encode()

    def submit(self, **kwargs: Any) -> str:
        with self.flow(GUEST) as guest:
            return guest.submit_job(self.pipeline_id, self.job_text(**kwargs)).job_id

    def running_steps(self, party: str) -> list[Any]:
        body = httpx.get(self.stack.party(party).health_url("task_engine"), timeout=10).json()
        return list(body["running"])


@pytest.fixture(scope="module")
def lifecycle(two_parties: TwoParties) -> Lifecycle:
    return Lifecycle.start(two_parties)


def _until(what: str, check: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except (ApiError, ConnectionFailed, httpx.TransportError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.3)


def _job(lc: Lifecycle, party: str, job_id: str) -> JobDetail:
    with lc.flow(party) as flow:
        return flow.job(job_id)


def _state(lc: Lifecycle, party: str, job_id: str, *states: str) -> JobDetail | None:
    job = _job(lc, party, job_id)
    return job if job.state in states else None


def _settled(lc: Lifecycle, party: str, job_id: str) -> JobDetail | None:
    """The job ended on ``party`` and no task of any party is still running in its view."""
    job = _state(lc, party, job_id, *_ENDED)
    return job if job and not any(t.state == "running" for t in job.tasks) else None


def _training(lc: Lifecycle, job_id: str) -> bool:
    """The train step runs on both parties (intersect and scale are done)."""
    job = _job(lc, GUEST, job_id)
    train = [t for t in job.tasks if t.step == "train"]
    return len(train) == 2 and all(t.state == "running" for t in train)


def _attempts(job: JobDetail) -> dict[tuple[str, str], int]:
    missing = [(t.step, t.party_id) for t in job.tasks if t.attempt is None]
    assert not missing, f"tasks without an attempt: {missing}"
    return job.attempts()


def _auc(lc: Lifecycle, job_id: str) -> float:
    with Dashboard(lc.stack.party(GUEST).dashboard_url) as dashboard:
        metrics = _until("the guest dashboard has AUC", lambda: _has_auc(dashboard, job_id), 60)
    return float(metrics.auc)


def _has_auc(dashboard: Dashboard, job_id: str) -> JobMetrics | None:
    metrics = dashboard.metrics(job_id)
    return metrics if metrics.auc is not None else None


@pytest.fixture(scope="module")
def paused_then_resumed(lifecycle: Lifecycle) -> tuple[str, float]:
    """A job paused from the host during training and resumed from the guest."""
    lc = lifecycle
    job_id = lc.submit()
    _until("training runs on both parties", lambda: _training(lc, job_id))
    with lc.flow(HOST) as host:
        host.pause_job(job_id)
    for party in (GUEST, HOST):
        _until(f"paused on {party}", lambda p=party: _state(lc, p, job_id, "paused"), 30)
    time.sleep(2.0)
    assert _job(lc, GUEST, job_id).state == "paused"  # nothing moved on while paused
    with lc.flow(GUEST) as guest:
        guest.resume_job(job_id)
    for party in (GUEST, HOST):
        job = _until(f"ended on {party}", lambda p=party: _state(lc, p, job_id, *_ENDED), 300)
        assert job.state == "success", job.failure_reason()
    return job_id, _auc(lc, job_id)


def test_stop_during_training_cancels_both_parties_and_rerun_reuses_earlier_steps(
    lifecycle: Lifecycle, paused_then_resumed: tuple[str, float]
) -> None:
    lc = lifecycle
    job_id = lc.submit()
    _until("training runs on both parties", lambda: _training(lc, job_id))
    with lc.flow(HOST) as host:
        host.stop_job(job_id)
    for party in (GUEST, HOST):
        job = _until(
            f"the job and its tasks settled on {party}",
            lambda p=party: _settled(lc, p, job_id),
            60,
        )
        assert job.state == "canceled"
        train = {t.party_id: t.state for t in job.tasks if t.step == "train"}
        assert train == {GUEST: "canceled", HOST: "canceled"}
    for party in (GUEST, HOST):
        _until(f"no step runs on {party}", lambda p=party: not lc.running_steps(p), 30)

    with lc.flow(GUEST) as guest:
        guest.rerun_job(job_id)
    for party in (GUEST, HOST):
        job = _until(f"ended on {party}", lambda p=party: _state(lc, p, job_id, *_ENDED), 300)
        assert job.state == "success", job.failure_reason()
        attempts = _attempts(job)
        assert attempts[("intersect", party)] == attempts[("scale", party)] == 1
        assert attempts[("train", party)] == 2

    # The rerun trained uninterrupted: a paused and resumed training ends at the same model.
    assert _auc(lc, job_id) == pytest.approx(paused_then_resumed[1], abs=1e-6)


def test_a_step_failing_on_the_host_fails_the_job_on_both_with_the_hosts_reason(
    lifecycle: Lifecycle,
) -> None:
    lc = lifecycle
    # the host's rows with a value `scale` cannot read: intersect passes, scale fails on the host
    # (a bad argument would not get this far: it is refused when the job is submitted)
    header, *rows = lc.parties.data.host_csv.read_text().splitlines()
    blanks = "," * (header.count(",") - 1)
    bad = lc.parties.root / "host-not-numeric.csv"
    bad.write_text("\n".join([header, *(f"{r.split(',')[0]},x{blanks}" for r in rows)]) + "\n")
    with lc.flow(HOST) as host:
        host.grant(GUEST, path=str(bad), role="host")
    job_id = lc.submit(host_args={"input": str(bad)})
    for party in (GUEST, HOST):
        job = _until(f"settled on {party}", lambda p=party: _settled(lc, p, job_id), 120)
        assert job.state == "failed"
        assert HOST in (job.reason or ""), job.reason
        assert not any(t.state == "running" for t in job.tasks), job.tasks
        scale = {t.party_id: t for t in job.tasks if t.step == "scale"}
        assert scale[HOST].state == "failed"


def test_a_proposal_the_host_cannot_accept_ends_rejected_with_its_reason(
    lifecycle: Lifecycle,
) -> None:
    lc = lifecycle
    job_id = lc.submit(host_args={"input": str(lc.parties.root / "no-such-file.csv")})
    job = _until("rejected on the guest", lambda: _state(lc, GUEST, job_id, *_ENDED), 60)
    assert job.state == "rejected"
    # the host granted no such path: its refusal says so, and does not say whether it exists
    reason = job.reason or ""
    assert HOST in reason and f"not granted to {GUEST}" in reason, reason
    assert "no-such-file.csv" not in reason and "exist" not in reason, reason


def test_a_flow_server_killed_mid_job_is_restarted_and_the_job_finishes(
    lifecycle: Lifecycle,
) -> None:
    lc = lifecycle
    job_id = lc.submit()
    _until("training runs on both parties", lambda: _training(lc, job_id))
    guest_flow = lc.parties.processes(GUEST).services["flow_server"]
    pid = guest_flow.pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    _until("the guest flow_server is gone", lambda: not guest_flow.running(), 30)
    lc.stack.up()  # starts what is not running and waits until every service is healthy
    for party in (GUEST, HOST):
        job = _until(f"ended on {party}", lambda p=party: _state(lc, p, job_id, *_ENDED), 300)
        assert job.state == "success", job.failure_reason()
