"""Tessera's Python SDK: one party's flow_server and dashboard over HTTP, synchronously.

    from tessera.sdk import Dashboard, Tessera

    with Tessera("http://127.0.0.1:9380", token="tsr_...") as t:
        pipeline = t.upload_pipeline("examples/hetero_lr/pipeline.yaml")
        job = t.submit_job(pipeline.pipeline_id, "job.yaml")
        final = t.wait(job.job_id)
    with Dashboard("http://127.0.0.1:8080") as d:
        print(d.metrics(final.job_id).auc)

Every call returns a typed model of the server's JSON answer; an error answer raises
:class:`ApiError` with the server's machine-readable ``code`` and its message; a server that
cannot be reached raises :class:`ConnectionFailed`. Both are :class:`TesseraError`. The ``tessera``
command line is built on this module.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict

__all__ = [
    "TERMINAL_STATES",
    "ApiError",
    "ConnectionFailed",
    "Dashboard",
    "Decision",
    "DecisionList",
    "Deleted",
    "Grant",
    "GrantList",
    "JobCreated",
    "JobDetail",
    "JobList",
    "JobMetrics",
    "JobSummary",
    "JobTask",
    "LogLine",
    "Logs",
    "Member",
    "ModelInfo",
    "ModelList",
    "OutputPlacement",
    "PipelineCreated",
    "PipelineInfo",
    "StepInfo",
    "Table",
    "TableList",
    "TaskInfo",
    "Tessera",
    "TesseraError",
]

DEFAULT_URL = "http://127.0.0.1:9380"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8080"
PREFIX = "/flow-server"
TERMINAL_STATES = frozenset({"success", "failed", "rejected", "canceled", "timeout"})
_CHUNK = 1024 * 1024
# What curl sends for `-F name=@file.yaml`: it guesses no type for .yaml files.
_UPLOAD_TYPE = "application/octet-stream"


class TesseraError(Exception):
    """Anything the SDK reports: the base of :class:`ApiError` and :class:`ConnectionFailed`."""


class ConnectionFailed(TesseraError):
    """The server could not be reached (or did not answer in time)."""


class ApiError(TesseraError):
    """The server answered with an error status and its JSON ``{code, message, where}``."""

    def __init__(self, status_code: int, code: str, message: str, where: str | None) -> None:
        super().__init__(f"{message} (at {where})" if where else message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.where = where


# --- answers -------------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class PipelineCreated(_Answer):
    pipeline_id: str
    name: str
    steps: list[str]


class PipelineInfo(PipelineCreated):
    created_ms: int


class JobCreated(_Answer):
    job_id: str
    status: str


class JobSummary(_Answer):
    job_id: str
    pipeline_id: str | None = None
    pipeline_name: str
    initiator: str
    state: str
    reason: str | None = None
    parties: list[str]
    created_ms: int
    updated_ms: int

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class TaskInfo(_Answer):
    party_id: str
    role: str
    state: str
    reason: str | None = None  # another party's failure: only its code's text
    attempt: int | None = None
    code: str | None = None


class OutputPlacement(_Answer):
    """Where this party writes the job's outputs, who chose it and why."""

    root: str
    chosen_by: str
    requested: str | None = None
    reason: str


class StepInfo(_Answer):
    name: str
    component: str
    tasks: list[TaskInfo]


class JobTask(TaskInfo):
    """One task of :attr:`JobDetail.tasks`: a step on one party, with the step's name."""

    step: str


class Member(_Answer):
    """A party of a job: its answer to the proposal and its own view of the job's state."""

    party_id: str
    role: str
    answer: str
    reason: str | None = None
    job_state: str | None = None
    job_reason: str | None = None


class JobDetail(JobSummary):
    """A job as one flow_server reports it: each step with its tasks on every party of the job,
    as this party knows them (the parties forward their task states to each other)."""

    roles: dict[str, list[str]] = {}
    members: list[Member] = []
    steps: list[StepInfo] = []
    output: OutputPlacement | None = None

    def pending_approval(self) -> list[str]:
        """The parties whose operator has yet to approve the proposal."""
        return [m.party_id for m in self.members if m.job_state == "pending_approval"]

    @property
    def tasks(self) -> list[JobTask]:
        """Every step's tasks, in step order."""
        return [JobTask(step=s.name, **t.model_dump()) for s in self.steps for t in s.tasks]

    def attempts(self) -> dict[tuple[str, str], int]:
        """``(step, party id) -> attempt`` of every task the server gave an attempt for."""
        return {(t.step, t.party_id): t.attempt for t in self.tasks if t.attempt is not None}

    def steps_done(self) -> int:
        """Steps that succeeded on every party taking part in them."""
        return sum(bool(s.tasks) and all(t.state == "success" for t in s.tasks) for s in self.steps)

    def running_steps(self) -> list[str]:
        return [s.name for s in self.steps if any(t.state == "running" for t in s.tasks)]

    def failure_reason(self) -> str:
        reasons = [self.reason] if self.reason else []
        reasons += [
            f"{s.name} on {t.party_id}: {t.reason}"
            for s in self.steps
            for t in s.tasks
            if t.state == "failed" and t.reason
        ]
        return "; ".join(reasons) or "no reason given"


class JobList(_Answer):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class Table(_Answer):
    table_id: str
    name: str
    path: str
    source: str
    size_bytes: int
    rows: int
    id_column: str
    label_column: str | None = None
    columns: dict[str, str]
    created_ms: int
    preview: dict[str, Any] | None = None


class TableList(_Answer):
    items: list[Table]
    total: int
    limit: int
    offset: int


class ModelInfo(_Answer):
    model_id: str
    job_id: str | None = None
    step: str
    party_id: str
    role: str
    component: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    path: str
    source: str
    created_ms: int


class ModelList(_Answer):
    items: list[ModelInfo]
    total: int
    limit: int
    offset: int


class Deleted(_Answer):
    deleted: str


class Grant(_Answer):
    grant_id: str
    peer: str
    kind: str
    table_id: str | None = None
    table_name: str | None = None
    path: str | None = None
    role: str | None = None
    components: list[str] = []
    expires_ms: int | None = None
    state: str
    created_ms: int
    created_by: str
    revoked_ms: int | None = None
    revoked_by: str | None = None


class GrantList(_Answer):
    items: list[Grant]
    total: int
    limit: int
    offset: int


class Decision(_Answer):
    decision_id: int
    job_id: str
    initiator: str
    pipeline_name: str
    parties: list[str]
    party_args: dict[str, Any] = {}
    common_args: dict[str, Any] = {}
    decision: str
    code: str | None = None
    rule: str
    decided_by: str
    reason: str | None = None
    decided_ms: int


class DecisionList(_Answer):
    items: list[Decision]
    total: int
    limit: int
    offset: int


class Parameter(_Answer):
    name: str
    type: str
    description: str
    default: Any = None
    required: bool = False
    nullable: bool = False
    choices: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None


class ComponentInfo(_Answer):
    name: str
    description: str
    roles: list[str]
    inputs: list[str]
    outputs: list[str]
    version: str
    parameters: list[Parameter]


class ComponentList(_Answer):
    items: list[ComponentInfo]
    platform_args: list[Parameter]


class LogLine(_Answer):
    ts: float
    party: str
    step: str | None = None
    level: str
    line: str


class Logs(_Answer):
    job_id: str
    counts: dict[str, int] = {}
    lines: list[LogLine]


class JobMetrics(_Answer):
    """A job's metrics as the dashboard aggregated them; ``auc``/``ks`` are None until reported."""

    job_id: str
    auc: float | None = None
    ks: float | None = None
    loss: list[dict[str, Any]] = []
    series: list[dict[str, Any]] = []
    scalars: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    steps: list[dict[str, Any]] = []


A = TypeVar("A", bound=_Answer)


def _raise_for(response: httpx.Response) -> None:
    if not response.is_error:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        where = body.get("where")
        raise ApiError(
            response.status_code,
            str(body.get("code") or "error"),
            body["message"],
            str(where) if where is not None else None,
        )
    text = response.text.strip() or response.reason_phrase
    raise ApiError(response.status_code, "http_error", text, None)


Progress = Callable[[int], object]
"""Told the number of bytes of each chunk as it goes (a progress bar's ``advance``)."""


def _file_chunks(path: Path, progress: Progress | None = None) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk
            if progress is not None:
                progress(len(chunk))


class _Client:
    """The HTTP plumbing :class:`Tessera` and :class:`Dashboard` share: errors become
    :class:`ApiError` / :class:`ConnectionFailed`, answers become typed models."""

    base_url: str

    def __init__(
        self,
        *,
        token: str | None,
        timeout_s: float,
        transport: httpx.BaseTransport | None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else self.base_url + path
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {url}: {exc}") from exc
        _raise_for(response)
        return response

    def _call(self, answer: type[A], method: str, path: str, **kwargs: Any) -> A:
        return answer.model_validate(self._send(method, path, **kwargs).json())


class Dashboard(_Client):
    """One party's dashboard JSON API. ``url`` is the dashboard's root."""

    def __init__(
        self,
        url: str = DEFAULT_DASHBOARD_URL,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = url.rstrip("/")
        super().__init__(token=token, timeout_s=timeout_s, transport=transport)

    def metrics(self, job_id: str) -> JobMetrics:
        """The job's AUC, KS, loss and other metrics (404 until the dashboard knows the job)."""
        return self._call(JobMetrics, "GET", f"/api/jobs/{job_id}/metrics")


class Tessera(_Client):
    """One party's flow_server. ``url`` is the server's root (``/flow-server`` is added)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        dashboard_url: str = DEFAULT_DASHBOARD_URL,
        timeout_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        root = url.rstrip("/")
        self.base_url = root if root.endswith(PREFIX) else root + PREFIX
        self.dashboard_url = dashboard_url.rstrip("/")
        super().__init__(token=token, timeout_s=timeout_s, transport=transport)

    # --- health, pipelines ---------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self._send("GET", "/health").json()
        return body

    def upload_pipeline(self, pipeline: Path | str | bytes) -> PipelineCreated:
        """Upload a pipeline.yaml (a path, or its bytes)."""
        content = Path(pipeline).read_bytes() if not isinstance(pipeline, bytes) else pipeline
        files = {"file": ("pipeline.yaml", content, _UPLOAD_TYPE)}
        return self._call(PipelineCreated, "POST", "/pipelines", files=files)

    def pipelines(self, *, limit: int = 100, offset: int = 0) -> list[PipelineInfo]:
        body = self._send("GET", "/pipelines", params={"limit": limit, "offset": offset}).json()
        return [PipelineInfo.model_validate(p) for p in body["items"]]

    # --- jobs ----------------------------------------------------------------------------------

    def submit_job(self, pipeline_id: str, job: Path | str | bytes) -> JobCreated:
        """Submit a job.yaml (a path, or its bytes) for a pipeline."""
        content = Path(job).read_bytes() if not isinstance(job, bytes) else job
        files = {"parameters": ("job.yaml", content, _UPLOAD_TYPE)}
        return self._call(JobCreated, "POST", f"/pipelines/{pipeline_id}/jobs", files=files)

    def job(self, job_id: str) -> JobDetail:
        return self._call(JobDetail, "GET", f"/jobs/{job_id}")

    def jobs(self, *, state: str | None = None, limit: int = 50, offset: int = 0) -> JobList:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state:
            params["state"] = state
        return self._call(JobList, "GET", "/jobs", params=params)

    def _control(self, job_id: str, action: str) -> JobSummary:
        return self._call(JobSummary, "POST", f"/jobs/{job_id}/{action}")

    def stop_job(self, job_id: str) -> JobSummary:
        """Stop the job on every party (its running steps are killed)."""
        return self._control(job_id, "stop")

    def pause_job(self, job_id: str) -> JobSummary:
        return self._control(job_id, "pause")

    def resume_job(self, job_id: str) -> JobSummary:
        return self._control(job_id, "resume")

    def rerun_job(self, job_id: str) -> JobSummary:
        """Rerun from the failed step, reusing the outputs of the steps that succeeded."""
        return self._control(job_id, "rerun")

    def approve_job(self, job_id: str) -> JobSummary:
        """Approve a peer's proposal this party holds for its operator (``pending_approval``)."""
        return self._control(job_id, "approve")

    def reject_job(self, job_id: str, reason: str | None = None) -> JobSummary:
        """Reject a held proposal; ``reason`` is sent to the initiator."""
        return self._call(JobSummary, "POST", f"/jobs/{job_id}/reject", json={"reason": reason})

    def decisions(
        self,
        *,
        job_id: str | None = None,
        initiator: str | None = None,
        decision: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> DecisionList:
        """This party's decisions about the proposals it received, newest first."""
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        for key, value in (("job_id", job_id), ("initiator", initiator), ("decision", decision)):
            if value:
                params[key] = value
        return self._call(DecisionList, "GET", "/decisions", params=params)

    def delete_job(self, job_id: str) -> None:
        self._send("DELETE", f"/jobs/{job_id}")

    def logs(self, job_id: str) -> Logs:
        """The job's recent log lines, from this party's dashboard (it aggregates ``fl.logs``)."""
        return self._call(Logs, "GET", f"{self.dashboard_url}/api/jobs/{job_id}/logs")

    def wait(
        self,
        job_id: str,
        *,
        timeout_s: float = 3600.0,
        interval_s: float = 2.0,
        on_update: Callable[[JobDetail], None] | None = None,
    ) -> JobDetail:
        """Poll until the job ends (or ``timeout_s`` passes: :class:`TimeoutError`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if job.finished:
                return job
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job.state} after {timeout_s:.0f} s")
            time.sleep(interval_s)

    # --- data ----------------------------------------------------------------------------------

    def upload_table(
        self, path: Path | str, *, name: str | None = None, progress: Progress | None = None
    ) -> Table:
        """Upload a CSV, streamed from disk (it is never read whole into memory)."""
        file = Path(path)
        return self._call(
            Table,
            "POST",
            "/data",
            params={"name": name or file.stem},
            content=_file_chunks(file, progress),
            headers={"content-type": "text/csv"},
        )

    def register_table(self, path: str, *, name: str | None = None) -> Table:
        """Register a CSV that exists on the server's filesystem."""
        return self._call(Table, "POST", "/data", json={"path": path, "name": name})

    def tables(self, *, source: str | None = None, limit: int = 50, offset: int = 0) -> TableList:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if source:
            params["source"] = source
        return self._call(TableList, "GET", "/data", params=params)

    def table(self, table_id: str) -> Table:
        return self._call(Table, "GET", f"/data/{table_id}")

    def delete_table(self, table_id: str) -> Deleted:
        return self._call(Deleted, "DELETE", f"/data/{table_id}")

    # --- grants --------------------------------------------------------------------------------

    def grant(
        self,
        peer: str,
        *,
        table: str | None = None,
        path: str | None = None,
        role: str | None = None,
        components: list[str] | None = None,
        expires_ms: int | None = None,
        kind: str = "input",
    ) -> Grant:
        """Let ``peer`` name a table (by name) or a path (a file or a directory) of this party's
        as its input in the jobs it proposes (``role``: host, the default, or guest), or a
        directory as this party's output (``kind="output"``)."""
        body: dict[str, Any] = {"peer": peer, "kind": kind, "components": components or []}
        for key, value in (
            ("table", table),
            ("path", path),
            ("role", role),
            ("expires_ms", expires_ms),
        ):
            if value is not None:
                body[key] = value
        return self._call(Grant, "POST", "/grants", json=body)

    def grants(
        self,
        *,
        peer: str | None = None,
        kind: str | None = None,
        active: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> GrantList:
        params: dict[str, Any] = {"limit": limit, "offset": offset, "active": active}
        if peer:
            params["peer"] = peer
        if kind:
            params["kind"] = kind
        return self._call(GrantList, "GET", "/grants", params=params)

    def get_grant(self, grant_id: str) -> Grant:
        return self._call(Grant, "GET", f"/grants/{grant_id}")

    def revoke_grant(self, grant_id: str) -> Grant:
        """Revoke a grant; proposals naming it are refused from now on."""
        return self._call(Grant, "DELETE", f"/grants/{grant_id}")

    # --- models --------------------------------------------------------------------------------

    def models(
        self,
        *,
        job_id: str | None = None,
        component: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> ModelList:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if job_id:
            params["job_id"] = job_id
        if component:
            params["component"] = component
        return self._call(ModelList, "GET", "/models", params=params)

    def model(self, model_id: str) -> ModelInfo:
        return self._call(ModelInfo, "GET", f"/models/{model_id}")

    def export_model(
        self,
        model_id: str,
        dest: Path | str | IO[bytes],
        *,
        progress: Progress | None = None,
        on_size: Callable[[int | None], object] | None = None,
    ) -> None:
        """Write the model's .tar.gz to ``dest`` (a path or a binary file), streamed;
        ``on_size`` is told the archive's size (None if the server does not say) first."""
        url = f"{self.base_url}/models/{model_id}/export"
        try:
            with self._http.stream("GET", url) as response:
                _raise_for(response)
                if on_size is not None:
                    length = response.headers.get("content-length")
                    on_size(int(length) if length and length.isdigit() else None)
                with contextlib.ExitStack() as stack:
                    out = (
                        stack.enter_context(open(dest, "wb"))
                        if isinstance(dest, Path | str)
                        else dest
                    )
                    for chunk in response.iter_bytes(_CHUNK):
                        out.write(chunk)
                        if progress is not None:
                            progress(len(chunk))
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"cannot reach {url}: {exc}") from exc

    def import_model(self, archive: Path | str) -> ModelInfo:
        with open(archive, "rb") as fh:
            files = {"file": (Path(archive).name, fh, "application/gzip")}
            return self._call(ModelInfo, "POST", "/models/import", files=files)

    def delete_model(self, model_id: str) -> Deleted:
        return self._call(Deleted, "DELETE", f"/models/{model_id}")

    # --- components ----------------------------------------------------------------------------

    def components(self) -> ComponentList:
        return self._call(ComponentList, "GET", "/components")

    def component(self, name: str) -> ComponentInfo:
        return self._call(ComponentInfo, "GET", f"/components/{name}")
