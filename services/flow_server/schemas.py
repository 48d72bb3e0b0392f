"""The REST API's request and response models."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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


# --- grants, approvals and decisions -----------------------------------------------------------


class GrantCreate(BaseModel):
    """Grant one peer the use of a table or a path of this party's (see ``flow_server.grants``)."""

    model_config = ConfigDict(extra="forbid")

    peer: str = Field(pattern=r"^\d{1,32}$", description="the party id granted to")
    kind: Literal["input", "output"] = "input"
    table: str | None = Field(default=None, max_length=200, description="a table's name or id")
    path: str | None = Field(
        default=None, max_length=4096, description="an absolute file or directory path"
    )
    role: Literal["host", "guest"] | None = Field(
        default=None,
        description="input grants: the role the data may serve (guest: the label-holding side, "
        "which may serve as host too); default host",
    )
    components: list[str] = Field(
        default_factory=list, max_length=64, description="the only components allowed (empty: any)"
    )
    expires_ms: int | None = Field(default=None, description="epoch ms after which it lapses")


class GrantOut(BaseModel):
    grant_id: str
    peer: str
    kind: str
    table_id: str | None
    table_name: str | None
    path: str | None
    role: str | None
    components: list[str]
    expires_ms: int | None
    state: str  # active / expired / revoked
    created_ms: int
    created_by: str
    revoked_ms: int | None
    revoked_by: str | None


class GrantList(BaseModel):
    items: list[GrantOut]
    total: int
    limit: int
    offset: int


class RejectJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500, description="sent to the initiator")


class DecisionOut(BaseModel):
    decision_id: int
    job_id: str
    initiator: str
    pipeline_name: str
    parties: list[str]
    party_args: dict[str, Any]  # this party's args as the proposal gave them
    common_args: dict[str, Any]
    decision: str  # accepted / rejected / pending_approval / approved / expired
    code: str | None
    rule: str
    decided_by: str  # "policy", "deadline" or the API token's name
    reason: str | None
    decided_ms: int


class DecisionList(BaseModel):
    items: list[DecisionOut]
    total: int
    limit: int
    offset: int


class ParameterOut(BaseModel):
    """One declared parameter of a component (or of the platform), JSON-schema-like."""

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


class ComponentOut(BaseModel):
    name: str
    description: str
    roles: list[str]
    inputs: list[str]
    outputs: list[str]
    version: str
    parameters: list[ParameterOut]


class ComponentList(BaseModel):
    items: list[ComponentOut]
    # keys every step may be given besides its component's parameters (paths, retries, timeouts)
    platform_args: list[ParameterOut]
