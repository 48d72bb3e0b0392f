"""The JSON the dashboard serves, built from the job views the store reads (the pages render it
too).

Naming: ``step`` is a pipeline step's name (an envelope's ``task``); a metric's own ``step`` field,
its iteration, is called ``iteration`` here so that the two cannot be confused.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel

from dashboard import analysis
from dashboard.views import LOSS, JobView, MetricKey, StepView


class StageOut(BaseModel):
    """One kind of a Spark step's work: its wall seconds and how many jobs, stages, tasks."""

    label: str
    seconds: float
    jobs: int
    stages: int
    tasks: int


class TaskOut(BaseModel):
    party: str
    state: str
    reason: str | None
    updated_at: float
    engine: str | None = None  # "local", or "spark (<master>)": the step's computing metric
    stages: list[StageOut] = []  # a Spark step's stage timings (its spark_stages metric)


class StepOut(BaseModel):
    name: str
    state: str
    tasks: list[TaskOut]
    component: str | None = None  # from job.status, else from this party's task.run
    depends: list[str] = []  # from job.status
    role: str | None = None  # known once this party's task.run was seen
    args: dict[str, Any] = {}

    @classmethod
    def of(cls, step: StepView) -> Self:
        tasks = [
            TaskOut(
                party=party,
                state=t.state,
                reason=t.reason,
                updated_at=t.updated_at,
                engine=step.engines.get(party),
                stages=[StageOut.model_validate(s) for s in step.stages.get(party, [])],
            )
            for party, t in sorted(step.tasks.items())
        ]
        out = cls(
            name=step.name,
            state=step.state,
            tasks=tasks,
            component=step.component,
            depends=list(step.depends),
        )
        if step.run is not None:
            out.component = out.component or step.run.component
            out.role, out.args = step.run.role, dict(step.run.args)
        return out


class JobSummary(BaseModel):
    job_id: str
    state: str
    reason: str | None
    initiator: str | None
    parties: list[str]  # "id=role"
    pipeline_name: str | None
    pipeline: list[str]  # step names in order
    auc: float | None
    ks: float | None
    steps_total: int
    steps_succeeded: int
    first_seen: float
    last_seen: float
    started_at: float | None
    ended_at: float | None
    duration_s: float | None  # running time: start to end, or to the last record while running

    @classmethod
    def of(cls, job: JobView) -> Self:
        steps = job.ordered_steps()
        return cls(
            job_id=job.job_id,
            state=job.state,
            reason=job.reason,
            initiator=job.initiator,
            parties=job.parties or sorted({p for s in steps for p in s.tasks}),
            pipeline_name=job.pipeline,
            pipeline=list(job.step_order),
            auc=job.auc,
            ks=job.ks,
            steps_total=len(steps),
            steps_succeeded=sum(s.state == "success" for s in steps),
            first_seen=job.first_seen,
            last_seen=job.last_seen,
            started_at=job.started_at,
            ended_at=job.ended_at,
            duration_s=_duration(job),
        )


def _duration(job: JobView) -> float | None:
    start = job.started_at if job.started_at is not None else job.first_seen
    end = job.ended_at if job.ended_at is not None else job.last_seen
    return max(0.0, end - start)


class JobPage(BaseModel):
    items: list[JobSummary]
    total: int  # jobs matching the filter
    limit: int
    offset: int
    states: dict[str, int]  # every job's state, counted (for the filter)


class DecisionOut(BaseModel):
    """This party's decision about the job's proposal (a party it was proposed to)."""

    decision: str  # accepted / rejected / pending_approval / approved / expired
    rule: str
    decided_by: str  # "policy", "deadline" or the API token's name
    reason: str | None
    decided_at: float


class JobDetail(JobSummary):
    steps: list[StepOut]
    log_counts: dict[str, int]
    decisions: list[DecisionOut] = []  # oldest first

    @classmethod
    def of(cls, job: JobView) -> Self:
        summary = JobSummary.of(job).model_dump()
        steps = [StepOut.of(s) for s in job.ordered_steps()]
        decisions = [
            DecisionOut(**vars(d)) for _, d in sorted(job.decisions.items(), key=lambda kv: kv[0])
        ]
        return cls(**summary, steps=steps, log_counts=dict(job.log_counts), decisions=decisions)


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
    set_aside: int = 0  # records it could not apply (on fl.dead), since it started
    last_record_at: float | None
    error: str | None


class Health(BaseModel):
    status: str  # "ok" once the consumer follows Kafka, else "starting" or "degraded"
    party_id: str
    jobs: int
    consumer: ConsumerHealth


class KsPointOut(BaseModel):
    ks: float
    threshold: float | None
    fpr: float
    tpr: float


class ConfusionOut(BaseModel):
    threshold: float
    tpr: float
    fpr: float
    tnr: float
    fnr: float
    counts: dict[str, float] | None  # expected tp/fp/tn/fn when the sample size is known


class GainOut(BaseModel):
    depth: float
    gain: float
    lift: float | None


class RocOut(BaseModel):
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


class FeatureOut(BaseModel):
    feature: str
    importance: float


class JobAnalysis(BaseModel):
    """What the charts draw, derived from the curve metrics (see :mod:`dashboard.analysis`)."""

    job_id: str
    step: str | None  # the step whose curves these are
    party: str | None
    auc: float | None
    ks: float | None
    roc: RocOut | None
    ks_point: KsPointOut | None
    threshold: float
    confusion: ConfusionOut | None
    positive_share: float | None
    positive_share_exact: bool
    gains: list[GainOut]
    importance: list[FeatureOut]

    @classmethod
    def of(cls, job: JobView, threshold: float | None = None) -> Self:
        key, roc = _latest_curve(job, analysis.ROC)
        scalars = {k.name: v for k, v in job.scalars.items() if key and k.step == key.step}
        step = job.steps.get(key.step or "") if key else None
        arg = step.run.args.get("threshold") if step and step.run else None
        at = threshold if threshold is not None else _as_float(arg, analysis.DEFAULT_THRESHOLD)
        if arg is not None:
            scalars.setdefault("threshold", _as_float(arg, analysis.DEFAULT_THRESHOLD))
        out = cls(
            job_id=job.job_id,
            step=key.step if key else None,
            party=key.party if key else None,
            auc=job.auc,
            ks=job.ks,
            roc=None,
            ks_point=None,
            threshold=at,
            confusion=None,
            positive_share=None,
            positive_share_exact=False,
            gains=[],
            importance=_importance(job),
        )
        if roc is None:
            return out
        out.roc = RocOut(fpr=roc.fpr, tpr=roc.tpr, thresholds=roc.thresholds)
        point = analysis.ks_point(roc)
        out.ks_point = KsPointOut(
            ks=point.ks, threshold=point.threshold, fpr=point.fpr, tpr=point.tpr
        )
        confusion_metric = (
            job.curves.get(MetricKey(key.step, key.party, "confusion")) if key else None
        )
        share = analysis.positive_share(roc, scalars, confusion_metric)
        if share is not None:
            out.positive_share, out.positive_share_exact = share
            out.gains = [
                GainOut(depth=g.depth, gain=g.gain, lift=g.lift)
                for g in analysis.gains(roc, share[0])
            ]
        confusion = analysis.confusion_at(
            roc, at, samples=scalars.get("samples"), share=share[0] if share else None
        )
        if confusion is not None:
            out.confusion = ConfusionOut(
                threshold=confusion.threshold,
                tpr=confusion.tpr,
                fpr=confusion.fpr,
                tnr=1 - confusion.fpr,
                fnr=1 - confusion.tpr,
                counts=confusion.counts,
            )
        return out


def _as_float(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return default
    return default


def _latest_curve(job: JobView, name: str) -> tuple[MetricKey | None, analysis.Roc | None]:
    """The named curve from the latest step (in pipeline order) that reported a usable one."""
    rank = {step: i for i, step in enumerate(job.step_order)}
    found = sorted(
        ((k, v) for k, v in job.curves.items() if k.name == name),
        key=lambda kv: (rank.get(kv[0].step or "", -1), kv[0].party),
    )
    for key, value in reversed(found):
        roc = analysis.Roc.parse(value)
        if roc is not None:
            return key, roc
    return None, None


def _importance(job: JobView) -> list[FeatureOut]:
    for key, value in job.curves.items():
        if key.name in analysis.IMPORTANCE_NAMES:
            pairs = analysis.importance(value)
            if pairs:
                return [FeatureOut(feature=f, importance=w) for f, w in pairs]
    return []


class PipelineStep(BaseModel):
    name: str
    component: str | None
    state: str
    depends: list[str]


class PipelineJob(BaseModel):
    job_id: str
    state: str
    steps: list[PipelineStep]


class Pipelines(BaseModel):
    jobs: list[PipelineJob]
