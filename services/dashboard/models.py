"""The dashboard's tables: one row per job, step, party's task, metric value, kept log line and
decision. Every name starts with ``dashboard_`` (the Alembic history too), so the dashboard may
share a PostgreSQL database with the flow_server.

A step name of ``""`` stands for "no step" (a job-level metric or log line): step names are never
empty (``fedcore.messages.StepName``), and a primary key cannot hold NULL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Double, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID = 32  # job and message ids: 32 hex digits
NAME = 128  # fedcore.messages.MAX_NAME
STEP = 64
PARTY = 18
STATE = 32


class Base(DeclarativeBase):
    pass


def _job_fk() -> ForeignKey:
    return ForeignKey("dashboard_jobs.job_id", ondelete="CASCADE")


class JobRow(Base):
    __tablename__ = "dashboard_jobs"

    job_id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Double, index=True)
    last_seen: Mapped[float] = mapped_column(Double)
    state: Mapped[str] = mapped_column(String(STATE), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    initiator: Mapped[str | None] = mapped_column(String(PARTY))
    pipeline: Mapped[str | None] = mapped_column(String(200))
    parties: Mapped[list[str]] = mapped_column(JSON)
    started_at: Mapped[float | None] = mapped_column(Double)
    ended_at: Mapped[float | None] = mapped_column(Double)
    step_order: Mapped[list[str]] = mapped_column(JSON)  # as declared, then as first seen
    log_counts: Mapped[dict[str, int]] = mapped_column(JSON)  # level -> lines ever received


class StepRow(Base):
    __tablename__ = "dashboard_steps"

    job_id: Mapped[str] = mapped_column(String(ID), _job_fk(), primary_key=True)
    name: Mapped[str] = mapped_column(String(STEP), primary_key=True)
    component: Mapped[str | None] = mapped_column(String(NAME))  # from job.status
    depends: Mapped[list[str]] = mapped_column(JSON)
    # this party's task.run: null until one was seen
    run_component: Mapped[str | None] = mapped_column(String(NAME))
    run_role: Mapped[str | None] = mapped_column(String(NAME))
    run_args: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    run_inputs: Mapped[dict[str, str] | None] = mapped_column(JSON)
    engines: Mapped[dict[str, str]] = mapped_column(JSON)  # party -> where it computed
    # party -> its Spark step's stage timings, longest first (fold.stage_timings)
    stages: Mapped[dict[str, list[dict[str, Any]]]] = mapped_column(JSON)


class TaskRow(Base):
    __tablename__ = "dashboard_tasks"

    job_id: Mapped[str] = mapped_column(String(ID), _job_fk(), primary_key=True)
    step: Mapped[str] = mapped_column(String(STEP), primary_key=True)
    party: Mapped[str] = mapped_column(String(PARTY), primary_key=True)
    state: Mapped[str] = mapped_column(String(STATE))
    reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Double)


class MetricRow(Base):
    """A scalar (``kind`` "scalar"), one iteration of a series ("series") or a structure such
    as a ROC curve ("curve"); ``iteration`` is 0 unless the kind is a series."""

    __tablename__ = "dashboard_metrics"

    job_id: Mapped[str] = mapped_column(String(ID), _job_fk(), primary_key=True)
    step: Mapped[str] = mapped_column(String(STEP), primary_key=True)
    party: Mapped[str] = mapped_column(String(PARTY), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    iteration: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)  # None: NaN or infinite


class LogRow(Base):
    """One kept log line; ``envelope_id`` recognises a line read again after a restart."""

    __tablename__ = "dashboard_logs"
    __table_args__ = (
        Index("ix_dashboard_logs_task", "job_id", "step", "party", "id"),
        Index("ix_dashboard_logs_envelope", "job_id", "envelope_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(ID), _job_fk())
    step: Mapped[str] = mapped_column(String(STEP))
    party: Mapped[str] = mapped_column(String(PARTY))
    envelope_id: Mapped[str] = mapped_column(String(ID))
    ts: Mapped[float] = mapped_column(Double)
    level: Mapped[str] = mapped_column(String(16))
    line: Mapped[str] = mapped_column(Text)


class DecisionRow(Base):
    __tablename__ = "dashboard_decisions"

    job_id: Mapped[str] = mapped_column(String(ID), _job_fk(), primary_key=True)
    decided_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    decision: Mapped[str] = mapped_column(String(STATE), primary_key=True)
    rule: Mapped[str] = mapped_column(Text)
    decided_by: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
