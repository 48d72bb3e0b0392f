"""The JSON the dashboard serves, built from the aggregator's views (the pages render it too).

Naming: ``step`` is a pipeline step's name (an envelope's ``task``); a metric's own ``step`` field,
its iteration, is called ``iteration`` here so that the two cannot be confused.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel

from dashboard.aggregator import LOSS, JobView, MetricKey, StepView


class TaskOut(BaseModel):
    party: str
    state: str
    reason: str | None
    updated_at: float


class StepOut(BaseModel):
    name: str
    state: str
    tasks: list[TaskOut]

    @classmethod
    def of(cls, step: StepView) -> Self:
        tasks = [
            TaskOut(party=party, state=t.state, reason=t.reason, updated_at=t.updated_at)
            for party, t in sorted(step.tasks.items())
        ]
        return cls(name=step.name, state=step.state, tasks=tasks)


class JobSummary(BaseModel):
    job_id: str
    state: str
    reason: str | None
    initiator: str | None
    parties: list[str]
    auc: float | None
    ks: float | None
    steps_total: int
    steps_succeeded: int
    first_seen: float
    last_seen: float

    @classmethod
    def of(cls, job: JobView) -> Self:
        steps = job.ordered_steps()
        return cls(
            job_id=job.job_id,
            state=job.state,
            reason=job.reason,
            initiator=job.initiator,
            parties=job.parties or sorted({p for s in steps for p in s.tasks}),
            auc=job.auc,
            ks=job.ks,
            steps_total=len(steps),
            steps_succeeded=sum(s.state == "success" for s in steps),
            first_seen=job.first_seen,
            last_seen=job.last_seen,
        )


class JobPage(BaseModel):
    items: list[JobSummary]
    total: int
    limit: int
    offset: int


class JobDetail(JobSummary):
    steps: list[StepOut]
    log_counts: dict[str, int]

    @classmethod
    def of(cls, job: JobView) -> Self:
        summary = JobSummary.of(job).model_dump()
        steps = [StepOut.of(s) for s in job.ordered_steps()]
        return cls(**summary, steps=steps, log_counts=dict(job.log_counts))


class MetricOut(BaseModel):
    step: str | None
    party: str
    name: str
    value: float | None


class Point(BaseModel):
    iteration: int
    value: float | None  # None: the value was NaN or infinite


class SeriesOut(BaseModel):
    step: str | None
    party: str
    name: str
    points: list[Point]


class CurveOut(BaseModel):
    step: str | None
    party: str
    name: str
    value: Any  # JSON-able, e.g. roc: {"fpr": [...], "tpr": [...], "thresholds": [...]}


def _key_order(key: MetricKey) -> tuple[str, str, str]:
    return (key.step or "", key.party, key.name)


class JobMetrics(BaseModel):
    job_id: str
    auc: float | None
    ks: float | None
    loss: list[SeriesOut]  # one per (step, party) that reported a loss per iteration
    series: list[SeriesOut]  # every other per-iteration metric
    scalars: list[MetricOut]
    curves: list[CurveOut]
    steps: list[StepOut]

    @classmethod
    def of(cls, job: JobView) -> Self:
        series = [
            SeriesOut(
                step=k.step,
                party=k.party,
                name=k.name,
                points=[Point(iteration=i, value=v) for i, v in sorted(points.items())],
            )
            for k, points in sorted(job.series.items(), key=lambda kv: _key_order(kv[0]))
        ]
        scalars = [
            MetricOut(step=k.step, party=k.party, name=k.name, value=v)
            for k, v in sorted(job.scalars.items(), key=lambda kv: _key_order(kv[0]))
        ]
        curves = [
            CurveOut(step=k.step, party=k.party, name=k.name, value=v)
            for k, v in sorted(job.curves.items(), key=lambda kv: _key_order(kv[0]))
        ]
        return cls(
            job_id=job.job_id,
            auc=job.auc,
            ks=job.ks,
            loss=[s for s in series if s.name == LOSS],
            series=[s for s in series if s.name != LOSS],
            scalars=scalars,
            curves=curves,
            steps=[StepOut.of(s) for s in job.ordered_steps()],
        )


class LogLineOut(BaseModel):
    ts: float
    party: str
    step: str | None
    level: str
    line: str


class JobLogs(BaseModel):
    job_id: str
    counts: dict[str, int]
    lines: list[LogLineOut]  # the most recent ones, oldest first

    @classmethod
    def of(cls, job: JobView) -> Self:
        lines = [
            LogLineOut(ts=x.ts, party=x.party, step=x.step, level=x.level, line=x.line)
            for x in job.logs
        ]
        return cls(job_id=job.job_id, counts=dict(job.log_counts), lines=lines)


class ConsumerHealth(BaseModel):
    connected: bool
    stopped: bool
    records: int
    last_record_at: float | None
    error: str | None


class Health(BaseModel):
    status: str  # "ok" once the consumer follows Kafka, else "starting" or "degraded"
    party_id: str
    jobs: int
    consumer: ConsumerHealth
