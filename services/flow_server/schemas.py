"""The REST API's request and response models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorOut(BaseModel):
    code: str
    message: str
    where: str | None = None


class PipelineCreated(BaseModel):
    pipeline_id: str
    name: str
    steps: list[str]


class PipelineOut(BaseModel):
    pipeline_id: str
    name: str
    steps: list[str]
    created_ms: int


class PipelineDetail(PipelineOut):
    yaml: str


class PipelineList(BaseModel):
    items: list[PipelineOut]


class JobCreated(BaseModel):
    job_id: str
    status: str


class JobSummary(BaseModel):
    job_id: str
    pipeline_id: str | None
    pipeline_name: str
    initiator: str
    state: str
    reason: str | None
    parties: list[str]
    created_ms: int
    updated_ms: int


class JobList(BaseModel):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class MemberOut(BaseModel):
    party_id: str
    role: str
    answer: str  # pending / accepted / rejected, as this party knows it
    reason: str | None
    # the job's state as that party last reported it (its view of the job)
    job_state: str | None = None
    job_reason: str | None = None


class TaskOut(BaseModel):
    party_id: str
    role: str
    state: str
    # this party's own: the full local detail; another party's: what it told (a code's text)
    reason: str | None
    code: str | None = None  # a failure's code (fedcore.failures), as every party sees it
    attempt: int | None
    updated_ms: int | None


class StepOut(BaseModel):
    name: str
    component: str
    tasks: list[TaskOut]  # one per party taking part in the step


class OutputPlacementOut(BaseModel):
    """Where this party writes the job's outputs, and why (flow_server.placement)."""

    root: str
    chosen_by: str  # "job.yaml" (this party's own), "grant" or "settings" (its output root)
    requested: str | None  # the output the job named for this party
    reason: str


class JobDetail(JobSummary):
    roles: dict[str, list[str]]
    members: list[MemberOut]
    steps: list[StepOut]
    fed_since_ms: int
    output: OutputPlacementOut | None = None


class Health(BaseModel):
    status: str
    party_id: str
    consumer: str


# --- data tables -------------------------------------------------------------------------------


class RegisterTable(BaseModel):
    """Register a CSV that already exists on this party's filesystem."""

    path: str
    name: str | None = None


class Preview(BaseModel):
    header: list[str]
    rows: list[list[str]]


class TableOut(BaseModel):
    table_id: str
    name: str
    path: str
    source: str  # "upload" or "path"
    size_bytes: int
    rows: int
    id_column: str
    label_column: str | None
    columns: dict[str, str]  # name -> id / label / numeric / categorical
    created_ms: int


class TableDetail(TableOut):
    preview: Preview  # the first 10 rows


class TableList(BaseModel):
    items: list[TableOut]
    total: int
    limit: int
    offset: int


# --- models ------------------------------------------------------------------------------------


class ModelOut(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    job_id: str | None
    step: str
    party_id: str
    role: str
    component: str
    parameters: dict[str, Any]
    metrics: dict[str, Any]
    path: str
    source: str  # "job" or "import"
    created_ms: int


class ModelList(BaseModel):
    items: list[ModelOut]
    total: int
    limit: int
    offset: int


class Deleted(BaseModel):
    deleted: str
