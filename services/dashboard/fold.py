"""Folding envelopes into the dashboard's tables, one batch in one transaction (:class:`Batch`).

Every write is an upsert keyed the way the view is: state is "last wins" per key (job; step and
party; metric, kind and iteration; decision), times are min/max. Reading a batch again in the same
order (at least once: a restart between writing the rows and committing the Kafka offset) leaves
the same rows. Log lines are the exception, as they accumulate: each is keyed by its envelope id,
so a line read again is recognised and neither stored nor counted twice. Each step and party
keeps only its last ``log_lines`` lines.

A body that lacks what its type needs changes nothing and is counted in ``skipped`` (its model in
``fedcore.messages`` was checked before, by the consumer, where one exists); a job is only
registered once one of its envelopes was valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final, Protocol, TypeVar

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dashboard.models import Base, DecisionRow, JobRow, LogRow, MetricRow, StepRow, TaskRow
from dashboard.views import (
    ACTIVE_STATES,
    DECISION,
    ENDED_STATES,
    JOB_STATUS,
    LOG,
    METRIC,
    TASK_RUN,
    TASK_STATUS,
    UNKNOWN,
    to_jsonable,
)
from fedcore.envelope import Envelope

NO_STEP: Final = ""  # the step key of a job-level metric or log line (models.py)
SCALAR, SERIES, CURVE = "scalar", "series", "curve"
# The metric a step reports its computing engine with (task_engine.step), and how much of it is
# shown (a master URL from a party's own settings, but bounded all the same).
COMPUTING_METRIC: Final = "computing"
MAX_ENGINE_TEXT: Final = 120
# The metric a Spark step reports its stages' timings with, per kind of work (task_engine.step):
# {label: {seconds, jobs, stages, tasks}}; kept bounded, a malformed entry left out.
STAGES_METRIC: Final = "spark_stages"
MAX_STAGE_LABELS: Final = 32
MAX_STAGE_LABEL: Final = 60
MAX_DECISION: Final = 32  # the decision column: "pending_approval" and its like

Row = TypeVar("Row", bound=Base)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` if it is not a plain number (bools are not)."""
    if not _is_number(value):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def stage_timings(value: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """The well-formed entries of a ``spark_stages`` metric as rows ``{label, seconds, jobs,
    stages, tasks}``, longest first, at most MAX_STAGE_LABELS; a malformed entry is left out."""
    timings: list[tuple[float, str, int, int, int]] = []
    for label, entry in list(value.items())[: 4 * MAX_STAGE_LABELS]:
        if not isinstance(label, str) or not isinstance(entry, Mapping):
            continue
        seconds = _number(entry.get("seconds"))
        counts = [entry.get(k) for k in ("jobs", "stages", "tasks")]
        if seconds is None or seconds < 0:
            continue
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            continue
        jobs, stages, tasks = (int(c or 0) for c in counts)
        timings.append((seconds, label[:MAX_STAGE_LABEL], jobs, stages, tasks))
    timings.sort(key=lambda t: -t[0])
    out = [
        {"label": label, "seconds": seconds, "jobs": jobs, "stages": stages, "tasks": tasks}
        for seconds, label, jobs, stages, tasks in timings
    ]
    return out[:MAX_STAGE_LABELS]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parties(value: Any) -> list[str] | None:
    """Parties as ``"id=role"`` strings: given as such a list, or as ``{role: [ids]}``."""
    if isinstance(value, list):
        return [str(p) for p in value]
    if isinstance(value, Mapping):
        return [f"{pid}={role}" for role, ids in value.items() for pid in ids]
    return None


class Batch:
    """Envelopes folded into the tables through one session; :meth:`finish` before committing.

    Rows are cached by key for the batch, so one job's many records cost one read of each row.
    """

    def __init__(self, session: Session, *, log_lines: int) -> None:
        self.session = session
        self._log_lines = log_lines
        self._rows: dict[tuple[type[Base], tuple[Any, ...]], Base] = {}
        self.logged: set[tuple[str, str, str]] = set()  # (job, step, party) given new lines
        self.log_ids: set[tuple[str, str]] = set()  # (job, envelope id) of this batch's lines
        self.applied = 0
        self.skipped = 0

    def apply(self, env: Envelope) -> bool:
        """Fold one envelope in; ``True`` if it changed a job's rows."""
        handler = _HANDLERS.get(env.type)
        if handler is None:
            return False
        if env.dst is not None and env.type not in (TASK_STATUS, TASK_RUN):
            # From fl.in.ctl only the peers' task states are wanted; the job's own state is
            # this party's flow_server's word on fl.status.
            return False
        job = self.get(JobRow, env.job_id)
        if job is None:
            job = JobRow(
                job_id=env.job_id,
                first_seen=env.ts,
                last_seen=env.ts,
                state=UNKNOWN,
                parties=[],
                step_order=[],
                log_counts={},
            )
            if not handler(self, job, env, dry_run=True):
                self.skipped += 1
                return False
            self.add(job, env.job_id)
            self.session.flush()  # its rows below refer to it
        if not handler(self, job, env, dry_run=False):
            self.skipped += 1
            return False
        job.first_seen = min(job.first_seen, env.ts)
        job.last_seen = max(job.last_seen, env.ts)
        self.applied += 1
        return True

    def finish(self) -> None:
        """Write what is pending and drop the log lines beyond each step and party's last
        ``log_lines``."""
        self.session.flush()
        for job_id, step, party in self.logged:
            of_task = (LogRow.job_id == job_id, LogRow.step == step, LogRow.party == party)
            cutoff = (
                select(LogRow.id)
                .where(*of_task)
                .order_by(LogRow.id.desc())
                .offset(self._log_lines)
                .limit(1)
                .scalar_subquery()
            )
            self.session.execute(
                delete(LogRow).where(*of_task, LogRow.id <= cutoff),
                execution_options={"synchronize_session": False},
            )
        self.logged.clear()

    def get(self, cls: type[Row], *key: Any) -> Row | None:
        cached = self._rows.get((cls, key))
        if cached is not None:
            return cached  # type: ignore[return-value]
        row = self.session.get(cls, key)
        if row is not None:
            self._rows[(cls, key)] = row
        return row

    def add(self, row: Base, *key: Any) -> None:
        self.session.add(row)
        self._rows[(type(row), key)] = row

    def step(self, job: JobRow, name: str) -> StepRow:
        step = self.get(StepRow, job.job_id, name)
        if step is None:
            step = StepRow(job_id=job.job_id, name=name, depends=[], engines={}, stages={})
            self.add(step, job.job_id, name)
        if name not in job.step_order:
            job.step_order = [*job.step_order, name]
        return step


class Handler(Protocol):
    """Checks an envelope's body (``dry_run``) or folds it in; ``False`` if it lacks what its
    type needs."""

    def __call__(self, batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool: ...


def _apply_job_status(batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool:
    body = env.body
    state = _text(body.get("state"))
    if state is None or dry_run:
        return state is not None
    job.state = state
    if state in ACTIVE_STATES:
        job.started_at = env.ts if job.started_at is None else min(job.started_at, env.ts)
    if state in ENDED_STATES:
        job.ended_at = env.ts if job.ended_at is None else max(job.ended_at, env.ts)
    job.reason = _text(body.get("reason"))
    if (initiator := body.get("initiator")) is not None:
        job.initiator = str(initiator)
    if (parties := _parties(body.get("parties"))) is not None:
        job.parties = parties
    if (pipeline := _text(body.get("pipeline"))) is not None:
        job.pipeline = pipeline
    steps = body.get("steps")
    if isinstance(steps, list):
        declared = [str(s) for s in steps]
        job.step_order = declared + [s for s in job.step_order if s not in declared]
    components, depends = body.get("components"), body.get("depends")
    for name in job.step_order:
        step = batch.step(job, name)
        if isinstance(components, Mapping) and (c := _text(components.get(name))) is not None:
            step.component = c
        if isinstance(depends, Mapping) and isinstance(d := depends.get(name), list):
            step.depends = [str(x) for x in d]
    return True


def _apply_task_status(batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool:
    state = _text(env.body.get("state"))
    if env.task is None or state is None or dry_run:
        return env.task is not None and state is not None
    party = str(env.body.get("party") or env.src)
    batch.step(job, env.task)
    task = batch.get(TaskRow, job.job_id, env.task, party)
    if task is None:
        task = TaskRow(job_id=job.job_id, step=env.task, party=party)
        batch.add(task, job.job_id, env.task, party)
    task.state, task.reason, task.updated_at = state, _text(env.body.get("reason")), env.ts
    return True


def _apply_task_run(batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool:
    body = env.body
    args, inputs = body.get("args"), body.get("inputs")
    valid = env.task is not None and isinstance(args, Mapping) and isinstance(inputs, Mapping)
    if not valid or dry_run or env.task is None:
        return valid
    assert isinstance(args, Mapping) and isinstance(inputs, Mapping)
    step = batch.step(job, env.task)
    step.run_component = _text(body.get("component"))
    step.run_role = _text(body.get("role"))
    step.run_args = {str(k): to_jsonable(v) for k, v in args.items()}
    step.run_inputs = {str(k): str(v) for k, v in inputs.items()}
    return True


def _apply_metric(batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool:
    body = env.body
    name = _text(body.get("name"))
    value, iteration = body.get("value"), body.get("step")
    bad_iteration = iteration is not None and (
        isinstance(iteration, bool) or not isinstance(iteration, int)
    )
    if not name or "value" not in body or bad_iteration or dry_run:
        return bool(name) and "value" in body and not bad_iteration
    party = str(body.get("party") or env.src)
    if env.task is not None:
        step = batch.step(job, env.task)
        if name == COMPUTING_METRIC and isinstance(value, Mapping):
            engine, master = _text(value.get("engine")), _text(value.get("master"))
            if engine is not None:
                where = f"{engine} ({master})" if engine != "local" and master else engine
                step.engines = {**step.engines, party: where[:MAX_ENGINE_TEXT]}
        if name == STAGES_METRIC and isinstance(value, Mapping):
            step.stages = {**step.stages, party: stage_timings(value)}
    if not _is_number(value):
        kind, at, stored = CURVE, 0, to_jsonable(value)
    elif iteration is None:
        kind, at, stored = SCALAR, 0, _number(value)
    else:
        kind, at, stored = SERIES, iteration, _number(value)
    key = (job.job_id, env.task or NO_STEP, party, name, kind, at)
    row = batch.get(MetricRow, *key)
    if row is None:
        row = MetricRow(
            job_id=job.job_id, step=key[1], party=party, name=name, kind=kind, iteration=at
        )
        batch.add(row, *key)
    row.value = stored
    return True


def _apply_log(batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool:
    line = _text(env.body.get("line"))
    if line is None or dry_run:
        return line is not None
    if (job.job_id, env.id) in batch.log_ids or batch.session.scalar(
        select(LogRow.id).where(LogRow.job_id == job.job_id, LogRow.envelope_id == env.id)
    ):
        return True  # read again after a restart: kept and counted already
    level = _text(env.body.get("level")) or "info"
    party = str(env.body.get("party") or env.src)
    step = env.task or NO_STEP
    job.log_counts = {**job.log_counts, level: job.log_counts.get(level, 0) + 1}
    batch.session.add(
        LogRow(
            job_id=job.job_id,
            step=step,
            party=party,
            envelope_id=env.id,
            ts=env.ts,
            level=level,
            line=line,
        )
    )
    batch.log_ids.add((job.job_id, env.id))
    batch.logged.add((job.job_id, step, party))
    return True


def _apply_decision(batch: Batch, job: JobRow, env: Envelope, *, dry_run: bool) -> bool:
    body = env.body
    decision, rule, by = (_text(body.get(k)) for k in ("decision", "rule", "decided_by"))
    when = body.get("decided_ms")
    valid = (
        decision is not None
        and len(decision) <= MAX_DECISION
        and rule is not None
        and by is not None
        and isinstance(when, int)
        and not isinstance(when, bool)
    )
    if not valid or dry_run:
        return valid
    assert decision is not None and rule is not None and by is not None and isinstance(when, int)
    if job.initiator is None and (initiator := _text(body.get("initiator"))) is not None:
        job.initiator = initiator
    row = batch.get(DecisionRow, job.job_id, when, decision)
    if row is None:
        row = DecisionRow(job_id=job.job_id, decided_ms=when, decision=decision)
        batch.add(row, job.job_id, when, decision)
    row.rule, row.decided_by, row.reason = rule, by, _text(body.get("reason"))
    return True


_HANDLERS: Final[dict[str, Handler]] = {
    DECISION: _apply_decision,
    JOB_STATUS: _apply_job_status,
    TASK_STATUS: _apply_task_status,
    TASK_RUN: _apply_task_run,
    METRIC: _apply_metric,
    LOG: _apply_log,
}
