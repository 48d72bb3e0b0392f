"""The dashboard's memory: envelopes folded into its tables (:mod:`dashboard.fold`) and the job
views read back from them, page by page, so neither start-up nor a request grows with history.

Sessions are synchronous: the consumer writes through ``asyncio.to_thread`` and the routes that
read are plain functions, which FastAPI runs in its thread pool; the event loop never waits on the
database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from sqlalchemy import Engine, Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from dashboard.fold import CURVE, NO_STEP, SCALAR, SERIES, Batch
from dashboard.models import DecisionRow, JobRow, LogRow, MetricRow, StepRow, TaskRow
from dashboard.views import (
    AUC,
    KS,
    LOG_TAIL,
    DecisionView,
    JobView,
    LogLine,
    MetricKey,
    StepRun,
    StepView,
    TaskView,
)
from fedcore.envelope import Envelope

# Log lines kept per step and party (the newest); a line is at most 16 KiB (fedcore.messages
# MAX_LOG_LINE), so a step and party keep at most 16 MiB.
LOG_LINES_PER_TASK: Final = 1000

S = TypeVar("S", bound=Select[Any])


@dataclass(frozen=True)
class Outcome:
    """What one batch did: envelopes folded in, and those of a known type whose body lacked what
    the type needs (ignored)."""

    applied: int
    skipped: int


class Store:
    def __init__(self, engine: Engine, *, log_lines: int = LOG_LINES_PER_TASK) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._log_lines = log_lines

    # --- writing -------------------------------------------------------------------------------

    def apply(self, envelopes: Sequence[Envelope]) -> Outcome:
        """Fold ``envelopes`` in, in order, in one transaction (all or nothing)."""
        with self._sessions.begin() as session:
            batch = Batch(session, log_lines=self._log_lines)
            for env in envelopes:
                batch.apply(env)
            batch.finish()
        return Outcome(batch.applied, batch.skipped)

    # --- reading -------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobView | None:
        """Everything about one job (its last :data:`LOG_TAIL` log lines)."""
        with self._sessions() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return None
            view = _views(session, [row])[0]
            _add_metrics(session, view, stmt=select(MetricRow).where(MetricRow.job_id == job_id))
            tail = session.scalars(
                select(LogRow)
                .where(LogRow.job_id == job_id)
                .order_by(LogRow.id.desc())
                .limit(LOG_TAIL)
            ).all()
            view.logs = [_line(r) for r in reversed(tail)]
            for d in session.scalars(select(DecisionRow).where(DecisionRow.job_id == job_id)):
                view.decisions[(d.decided_ms, d.decision)] = DecisionView(
                    d.decision, d.rule, d.decided_by, d.reason, d.decided_ms / 1000
                )
            return view

    def log_lines(self, job_id: str) -> list[LogLine]:
        """Every kept log line of a job, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(
                select(LogRow).where(LogRow.job_id == job_id).order_by(LogRow.id)
            ).all()
            return [_line(r) for r in rows]

    def jobs(
        self,
        *,
        state: str | None = None,
        search: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[JobView]:
        """Jobs, newest (first seen latest) first, optionally only those in ``state`` and those
        whose id contains ``search`` (case-insensitive): their steps, tasks and final AUC and
        KS, enough for a summary (no other metrics, logs or decisions)."""
        stmt = _filtered(select(JobRow), state, search)
        stmt = stmt.order_by(JobRow.first_seen.desc(), JobRow.job_id.desc()).offset(offset)
        with self._sessions() as session:
            rows = session.scalars(stmt if limit is None else stmt.limit(limit)).all()
            views = _views(session, rows)
            ids = [v.job_id for v in views]
            finals = select(MetricRow).where(
                MetricRow.job_id.in_(ids), MetricRow.kind == SCALAR, MetricRow.name.in_((AUC, KS))
            )
            if views:
                _add_metrics(session, *views, stmt=finals)
            return views

    def total(self, *, state: str | None = None, search: str | None = None) -> int:
        """How many jobs :meth:`jobs` would list without a limit."""
        stmt = _filtered(select(func.count()).select_from(JobRow), state, search)
        with self._sessions() as session:
            return session.scalar(stmt) or 0

    def states(self) -> dict[str, int]:
        """How many jobs are in each state."""
        stmt = select(JobRow.state, func.count()).group_by(JobRow.state).order_by(JobRow.state)
        with self._sessions() as session:
            return {state: count for state, count in session.execute(stmt)}

    def job_ids(self, limit: int) -> list[str]:
        """The newest jobs' ids."""
        stmt = select(JobRow.job_id).order_by(JobRow.first_seen.desc(), JobRow.job_id.desc())
        with self._sessions() as session:
            return list(session.scalars(stmt.limit(limit)))


def _filtered(stmt: S, state: str | None, search: str | None) -> S:
    if state is not None:
        stmt = stmt.where(JobRow.state == state)
    if search:
        stmt = stmt.where(func.lower(JobRow.job_id).contains(search.casefold(), autoescape=True))
    return stmt


def _views(session: Session, rows: Sequence[JobRow]) -> list[JobView]:
    """Views of ``rows`` with their steps and tasks."""
    views = {
        r.job_id: JobView(
            job_id=r.job_id,
            first_seen=r.first_seen,
            last_seen=r.last_seen,
            state=r.state,
            reason=r.reason,
            initiator=r.initiator,
            pipeline=r.pipeline,
            parties=list(r.parties),
            started_at=r.started_at,
            ended_at=r.ended_at,
            step_order=list(r.step_order),
            log_counts=dict(r.log_counts),
        )
        for r in rows
    }
    ids = list(views)
    for s in session.scalars(select(StepRow).where(StepRow.job_id.in_(ids))):
        run = None
        if s.run_args is not None and s.run_inputs is not None:
            run = StepRun(s.run_component, s.run_role, dict(s.run_args), dict(s.run_inputs))
        views[s.job_id].steps[s.name] = StepView(
            s.name,
            run=run,
            component=s.component,
            depends=list(s.depends),
            engines=dict(s.engines),
            stages=dict(s.stages),
        )
    for t in session.scalars(select(TaskRow).where(TaskRow.job_id.in_(ids))):
        step = views[t.job_id].steps.setdefault(t.step, StepView(t.step))
        step.tasks[t.party] = TaskView(t.state, t.reason, t.updated_at)
    return [views[r.job_id] for r in rows]


def _add_metrics(session: Session, *views: JobView, stmt: Select[MetricRow]) -> None:
    by_id = {v.job_id: v for v in views}
    for m in session.scalars(stmt):
        view = by_id[m.job_id]
        key = MetricKey(m.step if m.step != NO_STEP else None, m.party, m.name)
        if m.kind == CURVE:
            view.curves[key] = m.value
        elif m.kind == SERIES:
            view.series.setdefault(key, {})[m.iteration] = m.value
        else:
            view.scalars[key] = m.value
    for view in views:  # iterations in order, as the charts draw them
        view.series = {k: dict(sorted(points.items())) for k, points in view.series.items()}


def _line(row: LogRow) -> LogLine:
    return LogLine(
        row.ts, row.party, row.step if row.step != NO_STEP else None, row.level, row.line
    )
