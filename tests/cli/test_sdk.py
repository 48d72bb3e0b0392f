"""``tessera.sdk`` offline (httpx's MockTransport): the dashboard client's typed answers and errors,
and the task views a job's detail offers."""

from __future__ import annotations

import httpx
import pytest

from tessera.sdk import ApiError, ConnectionFailed, Dashboard, Tessera


def _task(
    party: str, state: str, attempt: int | None, reason: str | None = None
) -> dict[str, object]:
    role = "guest" if party == "10000" else "host"
    return {"party_id": party, "role": role, "state": state, "reason": reason, "attempt": attempt}


JOB = {
    "job_id": "j1",
    "pipeline_id": "p1",
    "pipeline_name": "hetero-lr",
    "initiator": "10000",
    "state": "failed",
    "reason": None,
    "parties": ["10000", "20000"],
    "created_ms": 1,
    "updated_ms": 2,
    "steps": [
        {
            "name": "intersect",
            "component": "intersect",
            "tasks": [_task("10000", "success", 1), _task("20000", "success", 1)],
        },
        {
            "name": "train",
            "component": "hetero_lr",
            "tasks": [_task("10000", "failed", 2, "out of memory"), _task("20000", "canceled", 2)],
        },
    ],
}


def _serve(request: httpx.Request) -> httpx.Response:
    path = request.url.path
    if path == "/api/jobs/j1/metrics":
        return httpx.Response(200, json={"job_id": "j1", "auc": 0.97, "ks": 0.81, "loss": []})
    if path == "/api/jobs/j2/metrics":
        return httpx.Response(200, json={"job_id": "j2", "auc": None, "ks": None})
    if path == "/flow-server/jobs/j1":
        return httpx.Response(200, json=JOB)
    body = {"code": "not_found", "message": f"no job at {path}", "where": "job_id"}
    return httpx.Response(404, json=body)


def test_dashboard_metrics_are_typed() -> None:
    with Dashboard("http://dash/", transport=httpx.MockTransport(_serve)) as dash:
        metrics = dash.metrics("j1")
        assert (metrics.job_id, metrics.auc, metrics.ks, metrics.loss) == ("j1", 0.97, 0.81, [])
        pending = dash.metrics("j2")
        assert pending.auc is None and pending.ks is None


def test_dashboard_errors_are_the_sdks() -> None:
    with Dashboard("http://dash", transport=httpx.MockTransport(_serve)) as dash:
        with pytest.raises(ApiError) as info:
            dash.metrics("nope")
    assert info.value.status_code == 404 and info.value.code == "not_found"
    assert info.value.where == "job_id" and "nope" in info.value.message
    with Dashboard("http://127.0.0.1:1", timeout_s=2) as down, pytest.raises(ConnectionFailed):
        down.metrics("j1")


def test_a_jobs_tasks_attempts_and_progress() -> None:
    with Tessera("http://flow", transport=httpx.MockTransport(_serve)) as flow:
        job = flow.job("j1")
    assert [(t.step, t.party_id, t.state) for t in job.tasks] == [
        ("intersect", "10000", "success"),
        ("intersect", "20000", "success"),
        ("train", "10000", "failed"),
        ("train", "20000", "canceled"),
    ]
    assert job.attempts() == {
        ("intersect", "10000"): 1,
        ("intersect", "20000"): 1,
        ("train", "10000"): 2,
        ("train", "20000"): 2,
    }
    assert job.finished and job.steps_done() == 1
    assert job.failure_reason() == "train on 10000: out of memory"
