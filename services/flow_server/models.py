"""The flow_server's tables: pipelines, jobs and their parties and tasks, processed ids, outbox.

The schema is created only by the Alembic migrations in ``migrations/``; a test checks that they
match these models.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flow_server.states import JobState, TaskState

__all__ = [
    "Answer",
    "ApiToken",
    "Base",
    "DataGrant",
    "DataTable",
    "Decision",
    "Job",
    "JobParty",
    "JobState",
    "Model",
    "OutboxRecord",
    "Pipeline",
    "ProcessedMessage",
    "Task",
    "TaskState",
    "now_ms",
]


def now_ms() -> int:
    return int(time.time() * 1000)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: JSON, list[str]: JSON}


class Answer:
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class Pipeline(Base):
    __tablename__ = "pipelines"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    yaml_text: Mapped[str] = mapped_column(Text)
    steps: Mapped[list[str]]
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # the local pipeline row on the initiator; None on a party the job was proposed to
    pipeline_id: Mapped[str | None] = mapped_column(String(32))
    pipeline_name: Mapped[str] = mapped_column(String(200))
    pipeline_yaml: Mapped[str] = mapped_column(Text)
    initiator: Mapped[str] = mapped_column(String(32))
    # written only through the transition checks of flow_server.states
    state: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    parties: Mapped[list[str]]  # ["10000=guest", "20000=host"], in job.yaml order
    common_args: Mapped[dict[str, Any]]
    party_args: Mapped[dict[str, Any]]  # this party's own parties-args only
    # when this party created or accepted the job: a step reads federation records from here on
    fed_since_ms: Mapped[int] = mapped_column(BigInteger)
    # the initiator's deadline for every party's answer to the proposal (None elsewhere)
    accept_deadline_ms: Mapped[int | None] = mapped_column(BigInteger)
    # step → the attempt it runs at now (absent: 1); raised by auto-retries and reruns, the same
    # on every party, so messages of an older attempt are never read
    step_attempts: Mapped[dict[str, Any] | None]
    # step → automatic retries used since the step last started afresh (absent: 0)
    step_retries: Mapped[dict[str, Any] | None]
    # where this party writes the job's outputs and who chose it (flow_server.placement): its
    # own settings or job.yaml, or a peer's `output` under a prefix granted for outputs
    output_placement: Mapped[dict[str, Any] | None]
    # step → reruns after this party's platform faults since the step last started afresh
    # (absent: 0); this party's own count, against its PLATFORM_RETRIES
    platform_retries: Mapped[dict[str, Any] | None]
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    members: Mapped[list[JobParty]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobParty.position"
    )
    tasks: Mapped[list[Task]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="Task.id"
    )


class JobParty(Base):
    __tablename__ = "job_parties"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    party_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer)
    answer: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    # the job's state as that party last reported it (this party's own: the job's state)
    job_state: Mapped[str | None] = mapped_column(String(16))
    job_reason: Mapped[str | None] = mapped_column(Text)

    job: Mapped[Job] = relationship(back_populates="members")


class Task(Base):
    """One step of one job on one party, as this party knows it."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    # this party's own: the full local detail; another party's: what it told (a code's text)
    reason: Mapped[str | None] = mapped_column(Text)
    # why it failed, as the other parties are told (fedcore.failures); None: not a failure here
    code: Mapped[str | None] = mapped_column(String(64))
    outputs: Mapped[dict[str, Any]]
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    updated_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms, onupdate=now_ms)

    job: Mapped[Job] = relationship(back_populates="tasks")

    __table_args__ = (
        # one row per (job, step, party)
        UniqueConstraint("job_id", "step", "party_id", name="uq_task"),
    )


class ProcessedMessage(Base):
    """Consumed envelopes already applied, by sender and id, so a redelivered one is skipped.

    The sender is part of the key: a party cannot make this one skip another party's message by
    sending its id first.
    """

    __tablename__ = "processed_messages"

    src: Mapped[str] = mapped_column(String(32), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    processed_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)

    __table_args__ = (PrimaryKeyConstraint("src", "id", name="pk_processed_messages"),)


class OutboxRecord(Base):
    """An envelope to publish, written in the same transaction as the state change it announces."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)


# --- data tables, trained models and API tokens (this party's own; never sent to peers) -------


class DataTable(Base):
    """A CSV this party registered (uploaded into ``STATE_DIR/data`` or an existing path).

    A job's party arg ``table:<id or name>`` resolves to ``path`` when the job is created or
    accepted here.
    """

    __tablename__ = "data_tables"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # "upload" or "path"
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    id_column: Mapped[str] = mapped_column(String(200))
    label_column: Mapped[str | None] = mapped_column(String(200))
    columns: Mapped[dict[str, Any]]  # column name -> "id" / "label" / "numeric" / "categorical"
    preview: Mapped[dict[str, Any]]  # {"header": [...], "rows": [[...], ...]} (first 10 rows)
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)


class Model(Base):
    """A trained model output of a step that succeeded on this party, or an imported one."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    step: Mapped[str] = mapped_column(String(200))
    party_id: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(32))
    component: Mapped[str] = mapped_column(String(64), index=True)
    parameters: Mapped[dict[str, Any]]  # the step's args as it ran here
    metrics: Mapped[dict[str, Any]]  # scalar metrics of an evaluation of its predictions
    path: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # "job" or "import"
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)


class ApiToken(Base):
    """An API token, stored as the SHA-256 of the token (the token itself is shown once)."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell it
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)


# --- grants and decisions: what this party lets its peers use, and what it decided -------------


class DataGrant(Base):
    """Data of this party that one peer may name in the jobs it proposes (``flow_server.grants``).

    An ``input`` grant names a registered table (``table_id``) or a path (``path``: a file, or a
    directory whose files are all granted); ``role`` is the role the data may serve (``host``
    only, or ``guest`` — the label-holding side, which may also serve as host); ``components``,
    when not empty, are the only components the party runs in such a job. An ``output`` grant
    names a directory the peer may give as this party's ``output``. A grant is never deleted:
    revoking it stamps ``revoked_ms``, so the decisions that used it stay explainable.
    """

    __tablename__ = "data_grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    peer: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "input" or "output"
    table_id: Mapped[str | None] = mapped_column(String(32))
    path: Mapped[str | None] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(String(16))  # input grants: "host" or "guest"
    components: Mapped[list[str]]
    expires_ms: Mapped[int | None] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms)
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_ms: Mapped[int | None] = mapped_column(BigInteger)
    revoked_by: Mapped[str | None] = mapped_column(String(200))


class Decision(Base):
    """One decision about a proposal this party received: append-only, kept after the job is
    deleted (the audit trail). Each row repeats the proposal as it arrived (this party's own args
    before any reference was resolved), so a later approval re-checks exactly what was asked."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    initiator: Mapped[str] = mapped_column(String(32))
    pipeline_name: Mapped[str] = mapped_column(String(200))
    pipeline_yaml: Mapped[str] = mapped_column(Text)
    parties: Mapped[list[str]]
    common_args: Mapped[dict[str, Any]]
    party_args: Mapped[dict[str, Any]]
    # accepted / rejected / pending_approval / approved / expired
    decision: Mapped[str] = mapped_column(String(20))
    code: Mapped[str | None] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(Text)  # which rule of this party's policy decided
    decided_by: Mapped[str] = mapped_column(String(200))  # "policy", "deadline" or a token name
    reason: Mapped[str | None] = mapped_column(Text)
    decided_ms: Mapped[int] = mapped_column(BigInteger, default=now_ms, index=True)
