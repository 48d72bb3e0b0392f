"""Per-job views folded from ``fl.status``, ``fl.results`` and ``fl.logs`` envelopes (pure, no I/O).

:class:`Aggregator` is fed envelopes in topic order and keeps, per job, everything the dashboard
shows. It does no I/O and never raises on a malformed body (a producer's bug must not stop the
dashboard): such an envelope is counted in :attr:`Aggregator.skipped` and otherwise ignored.

Applying the same records again in the same order gives the same view: state is "last wins" per
key (job; step and party; metric and iteration), times are min/max. Only the log tail would
repeat, so a consumer that replays from the beginning starts from :meth:`Aggregator.clear`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from fedcore.envelope import Envelope

JOB_STATUS: Final = "job.status"
TASK_STATUS: Final = "task.status"
METRIC: Final = "metric"
LOG: Final = "log"
TASK_RUN: Final = "task.run"  # on fl.tasks: this party's component, role and arguments of a step
# on fl.status: this party's decision about a proposal it received (flow_server.decisions)
DECISION: Final = "proposal.decision"

ACTIVE_STATES: Final = frozenset({"running"})
ENDED_STATES: Final = frozenset({"success", "failed", "canceled"})

UNKNOWN: Final = "unknown"
LOG_TAIL: Final = 200

# Metrics the job summary lifts out of the evaluation step's results.
AUC: Final = "auc"
KS: Final = "ks"
LOSS: Final = "loss"

Number = int | float


def to_jsonable(value: Any) -> Any:
    """A metric value as JSON can carry it: arrays as lists, NaN and infinities as ``None``."""
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` if it is not a plain number (bools are not)."""
    if isinstance(value, bool) or not isinstance(value, Number):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, Number)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _parties(value: Any) -> list[str] | None:
    """Parties as ``"id=role"`` strings: given as such a list, or as ``{role: [ids]}``."""
    if isinstance(value, list):
        return [str(p) for p in value]
    if isinstance(value, Mapping):
        return [f"{pid}={role}" for role, ids in value.items() for pid in ids]
    return None


# The metric a step reports its computing engine with (task_engine.step), and how much of it is
# shown (a master URL from a party's own settings, but bounded all the same).
COMPUTING_METRIC = "computing"
MAX_ENGINE_TEXT = 120
# The metric a Spark step reports its stages' timings with, per kind of work (task_engine.step):
# {label: {seconds, jobs, stages, tasks}}; kept bounded, the rest of an entry ignored.
STAGES_METRIC = "spark_stages"
MAX_STAGE_LABELS = 32
MAX_STAGE_LABEL = 60


@dataclass(frozen=True)
class StageTiming:
    """What one kind of a Spark step's work took (``fedalgo.computing.spark``)."""

    label: str
    seconds: float
    jobs: int
    stages: int
    tasks: int


def _stage_timings(value: Mapping[Any, Any]) -> list[StageTiming]:
    """The well-formed entries of a ``spark_stages`` metric, longest first, at most
    MAX_STAGE_LABELS; a malformed entry is left out."""
    out = []
    for label, entry in value.items():
        if not isinstance(label, str) or not isinstance(entry, Mapping):
            continue
        seconds = _number(entry.get("seconds"))
        counts = [entry.get(k) for k in ("jobs", "stages", "tasks")]
        if seconds is None or seconds < 0:
            continue
        jobs, stages, tasks = [
            c if isinstance(c, int) and not isinstance(c, bool) else -1 for c in counts
        ]
        if min(jobs, stages, tasks) < 0:
            continue
        out.append(StageTiming(label[:MAX_STAGE_LABEL], seconds, jobs, stages, tasks))
    out.sort(key=lambda t: -t.seconds)
    return out[:MAX_STAGE_LABELS]


@dataclass
class TaskView:
    """One step on one party."""

    state: str
    reason: str | None
    updated_at: float


@dataclass
class StepRun:
    """What this party's flow_server asked its task_engine to run for a step (``task.run``)."""

    component: str | None
    role: str | None
    args: dict[str, Any]
    inputs: dict[str, str]


@dataclass
class StepView:
    name: str
    tasks: dict[str, TaskView] = field(default_factory=dict)  # party id -> its task
    run: StepRun | None = None
    # from the pipeline, as the flow_server announces it in job.status
    component: str | None = None
    depends: list[str] = field(default_factory=list)
    # party id -> where its step computed ("local", or "spark" and the master), from the
    # step's ``computing`` metric (fedalgo.computing)
    engines: dict[str, str] = field(default_factory=dict)
    # party id -> its Spark step's stage timings (the ``spark_stages`` metric)
    stages: dict[str, list[StageTiming]] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """``failed`` if any party failed, ``running`` if any runs, ``success`` if all succeeded.

        Otherwise the state of the parties that have not succeeded yet (e.g. ``waiting``).
        """
        states = {t.state for t in self.tasks.values()}
        if not states:
            return "pending"
        for state in ("failed", "canceled", "running"):
            if state in states:
                return state
        return min(states - {"success"}, default="success")


@dataclass(frozen=True)
class MetricKey:
    step: str | None  # the pipeline step (envelope ``task``) that emitted it
    party: str
    name: str


@dataclass
class LogLine:
    ts: float
    party: str
    step: str | None
    level: str
    line: str


@dataclass(frozen=True)
class DecisionView:
    """A decision of this party's about the job's proposal: by its policy, a person or the
    deadline."""

    decision: str
    rule: str
    decided_by: str
    reason: str | None
    decided_at: float  # epoch seconds


@dataclass
class JobView:
    """Everything the dashboard knows about one job."""

    job_id: str
    first_seen: float
    last_seen: float
    state: str = UNKNOWN
    reason: str | None = None
    initiator: str | None = None
    pipeline: str | None = None  # the pipeline's name
    parties: list[str] = field(default_factory=list)
    started_at: float | None = None  # first seen running
    ended_at: float | None = None  # last seen in an end state
    step_order: list[str] = field(default_factory=list)  # as declared, then as first seen
    steps: dict[str, StepView] = field(default_factory=dict)
    scalars: dict[MetricKey, float | None] = field(default_factory=dict)
    series: dict[MetricKey, dict[int, float | None]] = field(default_factory=dict)
    curves: dict[MetricKey, Any] = field(default_factory=dict)  # JSON-able structures
    log_counts: dict[str, int] = field(default_factory=dict)
    logs: deque[LogLine] = field(default_factory=lambda: deque(maxlen=LOG_TAIL))
    # (decided_ms, decision) -> the decision: a replayed record lands on its own key
    decisions: dict[tuple[int, str], DecisionView] = field(default_factory=dict)

    def ordered_steps(self) -> list[StepView]:
        return [self.steps.get(name) or StepView(name) for name in self.step_order]

    def final(self, name: str) -> float | None:
        """A final (iteration-less) scalar such as ``auc``, from the latest step that emitted one.

        Steps are taken in pipeline order, so the evaluation step, which comes after training,
        wins over a training step that reports the same metric.
        """
        found = [(k, v) for k, v in self.scalars.items() if k.name == name]
        if not found:
            return None
        rank = {step: i for i, step in enumerate(self.step_order)}
        _, value = max(found, key=lambda kv: (rank.get(kv[0].step or "", -1), kv[0].party))
        return value

    @property
    def auc(self) -> float | None:
        return self.final(AUC)

    @property
    def ks(self) -> float | None:
        return self.final(KS)


class Aggregator:
    """Folds envelopes into :class:`JobView` s; reads and writes happen on one event loop."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobView] = {}
        self.applied = 0
        self.skipped = 0
        self.version = 0  # bumped whenever a view changed

    def clear(self) -> None:
        self._jobs.clear()
        self.applied = self.skipped = 0
        self.version += 1

    def apply(self, env: Envelope) -> bool:
        """Fold one envelope in; ``True`` if a job view changed."""
        handler = _HANDLERS.get(env.type)
        if handler is None:
            return False
        if env.dst is not None and env.type not in (TASK_STATUS, TASK_RUN):
            # From fl.in.ctl only the peers' task states are wanted; the job's own state is
            # this party's flow_server's word on fl.status.
            return False
        job = self._job(env)
        if not handler(job, env):
            self.skipped += 1
            return False
        job.first_seen = min(job.first_seen, env.ts)
        job.last_seen = max(job.last_seen, env.ts)
        self._jobs[env.job_id] = job
        self.applied += 1
        self.version += 1
        return True

    def apply_all(self, envs: Iterable[Envelope]) -> bool:
        changed = False
        for env in envs:
            changed = self.apply(env) or changed
        return changed

    def _job(self, env: Envelope) -> JobView:
        # A job is only registered once one of its envelopes was valid (see apply).
        return self._jobs.get(env.job_id) or JobView(env.job_id, env.ts, env.ts)

    def get(self, job_id: str) -> JobView | None:
        return self._jobs.get(job_id)

    def jobs(self, *, state: str | None = None, search: str | None = None) -> list[JobView]:
        """Jobs, newest (first seen latest) first, optionally only those in ``state`` and those
        whose id contains ``search`` (case-insensitive)."""
        needle = (search or "").casefold()
        views = (
            j
            for j in self._jobs.values()
            if (state is None or j.state == state) and needle in j.job_id.casefold()
        )
        return sorted(views, key=lambda j: (j.first_seen, j.job_id), reverse=True)

    def states(self) -> dict[str, int]:
        """How many jobs are in each state."""
        counts: dict[str, int] = {}
        for job in self._jobs.values():
            counts[job.state] = counts.get(job.state, 0) + 1
        return dict(sorted(counts.items()))

    def __len__(self) -> int:
        return len(self._jobs)


def _apply_job_status(job: JobView, env: Envelope) -> bool:
    body = env.body
    state = _text(body.get("state"))
    if state is None:
        return False
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
        step = _step(job, name)
        if isinstance(components, Mapping) and (c := _text(components.get(name))) is not None:
            step.component = c
        if isinstance(depends, Mapping) and isinstance(d := depends.get(name), list):
            step.depends = [str(x) for x in d]
    return True


def _step(job: JobView, name: str) -> StepView:
    if name not in job.steps:
        job.steps[name] = StepView(name)
        if name not in job.step_order:
            job.step_order.append(name)
    return job.steps[name]


def _apply_task_status(job: JobView, env: Envelope) -> bool:
    state = _text(env.body.get("state"))
    if env.task is None or state is None:
        return False
    party = str(env.body.get("party") or env.src)
    task = TaskView(state, _text(env.body.get("reason")), env.ts)
    _step(job, env.task).tasks[party] = task
    return True


def _apply_task_run(job: JobView, env: Envelope) -> bool:
    body = env.body
    args, inputs = body.get("args"), body.get("inputs")
    if env.task is None or not isinstance(args, Mapping) or not isinstance(inputs, Mapping):
        return False
    paths = {str(k): str(v) for k, v in inputs.items()}
    _step(job, env.task).run = StepRun(
        component=_text(body.get("component")),
        role=_text(body.get("role")),
        args={str(k): to_jsonable(v) for k, v in args.items()},
        inputs=paths,
    )
    return True


def _apply_metric(job: JobView, env: Envelope) -> bool:
    body = env.body
    name = _text(body.get("name"))
    if not name or "value" not in body:
        return False
    value, iteration = body["value"], body.get("step")
    if iteration is not None and (isinstance(iteration, bool) or not isinstance(iteration, int)):
        return False
    key = MetricKey(env.task, str(body.get("party") or env.src), name)
    if env.task is not None:
        _step(job, env.task)
    if env.task is not None and name == COMPUTING_METRIC and isinstance(value, Mapping):
        engine, master = _text(value.get("engine")), _text(value.get("master"))
        if engine is not None:
            where = f"{engine} ({master})" if engine != "local" and master else engine
            _step(job, env.task).engines[key.party] = where[:MAX_ENGINE_TEXT]
    if env.task is not None and name == STAGES_METRIC and isinstance(value, Mapping):
        _step(job, env.task).stages[key.party] = _stage_timings(value)
    if not _is_number(value):
        job.curves[key] = to_jsonable(value)
    elif iteration is None:
        job.scalars[key] = _number(value)
    else:
        job.series.setdefault(key, {})[iteration] = _number(value)
    return True


def _apply_log(job: JobView, env: Envelope) -> bool:
    line = _text(env.body.get("line"))
    if line is None:
        return False
    level = _text(env.body.get("level")) or "info"
    job.log_counts[level] = job.log_counts.get(level, 0) + 1
    party = str(env.body.get("party") or env.src)
    job.logs.append(LogLine(env.ts, party, env.task, level, line))
    return True


def _apply_decision(job: JobView, env: Envelope) -> bool:
    body = env.body
    decision, rule, by = (_text(body.get(k)) for k in ("decision", "rule", "decided_by"))
    when = body.get("decided_ms")
    if decision is None or rule is None or by is None or not isinstance(when, int):
        return False
    if job.initiator is None and (initiator := _text(body.get("initiator"))) is not None:
        job.initiator = initiator
    job.decisions[(when, decision)] = DecisionView(
        decision, rule, by, _text(body.get("reason")), when / 1000
    )
    return True


_HANDLERS: Final = {
    DECISION: _apply_decision,
    JOB_STATUS: _apply_job_status,
    TASK_STATUS: _apply_task_status,
    TASK_RUN: _apply_task_run,
    METRIC: _apply_metric,
    LOG: _apply_log,
}
