"""The HTTP calls a user makes with curl, as small typed functions (the future SDK grows from here).

curl -F file=@pipeline.yaml      http://127.0.0.1:9380/flow-server/pipelines
curl -F parameters=@job.yaml     http://127.0.0.1:9380/flow-server/pipelines/<id>/jobs
curl http://127.0.0.1:9380/flow-server/jobs/<job_id>
curl http://127.0.0.1:8080/api/jobs/<job_id>/metrics
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

import httpx

# What curl sends for `-F name=@file.yaml`: it guesses no type for .yaml files.
_UPLOAD_TYPE = "application/octet-stream"
TERMINAL_STATES = frozenset({"success", "failed", "rejected", "canceled", "timeout"})


class ApiError(RuntimeError):
    """A Tessera service answered with an error status; ``message`` is what it said."""

    def __init__(self, method: str, url: str, status_code: int, message: str) -> None:
        super().__init__(f"{method} {url} -> {status_code}: {message}")
        self.status_code = status_code
        self.message = message


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict) and body.get("message"):
        # Tessera's error body: {"code", "message", "where"}
        where = body.get("where")
        return f"{body['message']} (at {where})" if where else str(body["message"])
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else str(detail)
    return str(body)


def _json(response: httpx.Response) -> Any:
    if response.is_error:
        raise ApiError(
            response.request.method,
            str(response.request.url),
            response.status_code,
            _error_message(response),
        )
    return response.json()


@dataclass(frozen=True)
class TaskView:
    """One step on one party."""

    step: str
    party: str
    state: str
    reason: str | None


@dataclass(frozen=True)
class JobView:
    """A job as one flow_server reports it (``GET /flow-server/jobs/{id}``).

    The flow_server lists each step with its tasks on every party of the job, as this party
    knows them (the parties forward their task states to each other).
    """

    job_id: str
    state: str
    reason: str | None
    steps: list[str]
    tasks: list[TaskView]
    raw: dict[str, Any]

    @classmethod
    def of(cls, body: dict[str, Any]) -> Self:
        steps = [str(s["name"]) for s in body.get("steps") or []]
        tasks = [
            TaskView(
                step=str(step["name"]),
                party=str(t.get("party_id")),
                state=str(t.get("state")),
                reason=t.get("reason"),
            )
            for step in body.get("steps") or []
            for t in step.get("tasks") or []
        ]
        return cls(
            job_id=str(body["job_id"]),
            state=str(body["state"]),
            reason=body.get("reason"),
            steps=steps,
            tasks=tasks,
            raw=body,
        )

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES

    def steps_done(self) -> int:
        """Steps that succeeded on every party taking part in them."""
        return sum(
            bool(mine) and all(t.state == "success" for t in mine)
            for mine in ([t for t in self.tasks if t.step == s] for s in self.steps)
        )

    def failure_reason(self) -> str:
        """The job's reason, or the reasons of its failed tasks."""
        reasons = [self.reason] if self.reason else []
        reasons += [f"{t.step} on {t.party}: {t.reason}" for t in self.tasks if t.state == "failed"]
        return "; ".join(reasons) or "no reason given"


class FlowClient:
    """One party's flow_server REST API."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0) -> None:
        """``base_url`` ends with ``/flow-server``, e.g. ``http://127.0.0.1:9380/flow-server``."""
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def upload_pipeline(self, content: bytes, filename: str = "pipeline.yaml") -> str:
        """``curl -F file=@pipeline.yaml .../pipelines``; returns the pipeline id."""
        files = {"file": (filename, content, _UPLOAD_TYPE)}
        body = _json(self._http.post(f"{self.base_url}/pipelines", files=files))
        return str(body["pipeline_id"])

    def submit_job(self, pipeline_id: str, content: bytes, filename: str = "job.yaml") -> str:
        """``curl -F parameters=@job.yaml .../pipelines/{id}/jobs``; returns the job id."""
        files = {"parameters": (filename, content, _UPLOAD_TYPE)}
        url = f"{self.base_url}/pipelines/{pipeline_id}/jobs"
        return str(_json(self._http.post(url, files=files))["job_id"])

    def job(self, job_id: str) -> JobView:
        return JobView.of(_json(self._http.get(f"{self.base_url}/jobs/{job_id}")))

    def jobs(self) -> Any:
        return _json(self._http.get(f"{self.base_url}/jobs"))

    def _command(self, job_id: str, action: str) -> Any:
        return _json(self._http.post(f"{self.base_url}/jobs/{job_id}/{action}"))

    def stop(self, job_id: str) -> Any:
        """Cancel the job on every party (its running steps are killed); the job's summary."""
        return self._command(job_id, "stop")

    def pause(self, job_id: str) -> Any:
        """Suspend the job's steps on every party."""
        return self._command(job_id, "pause")

    def resume(self, job_id: str) -> Any:
        return self._command(job_id, "resume")

    def rerun(self, job_id: str) -> Any:
        """Run a failed, canceled or timed-out job again from the steps that did not succeed."""
        return self._command(job_id, "rerun")

    def delete(self, job_id: str) -> None:
        """Forget an ended job on every party."""
        response = self._http.delete(f"{self.base_url}/jobs/{job_id}")
        if response.status_code != 204:
            _json(response)  # raises the API's error


class DashboardClient:
    """One party's dashboard JSON API."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def metrics(self, job_id: str) -> dict[str, Any]:
        body = _json(self._http.get(f"{self.base_url}/api/jobs/{job_id}/metrics"))
        if not isinstance(body, dict):
            raise ApiError("GET", f"/api/jobs/{job_id}/metrics", 200, "not a JSON object")
        return body
