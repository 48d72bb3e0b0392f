"""What the dashboard shows of one job (:class:`JobView`), as :mod:`dashboard.store` reads it
from its tables, and the pure helpers that turn received values into what is stored."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

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
LOG_TAIL: Final = 200  # log lines a job's view shows (the most recent ones)

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
    # party id -> its Spark step's stage timings ({label, seconds, jobs, stages, tasks})
    stages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

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
    logs: list[LogLine] = field(default_factory=list)  # the last LOG_TAIL lines, oldest first
    # (decided_ms, decision) -> the decision: a record read again lands on its own key
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
