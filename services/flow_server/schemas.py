"""The REST API's request and response models."""

from __future__ import annotations

from pydantic import BaseModel


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


class TaskOut(BaseModel):
    party_id: str
    role: str
    state: str
    reason: str | None
    attempt: int | None
    updated_ms: int | None


class StepOut(BaseModel):
    name: str
    component: str
    tasks: list[TaskOut]  # one per party taking part in the step


class JobDetail(JobSummary):
    roles: dict[str, list[str]]
    members: list[MemberOut]
    steps: list[StepOut]
    fed_since_ms: int


class Health(BaseModel):
    status: str
    party_id: str
    consumer: str
