"""The derived curves (KS point, confusion rates, positive share, gain/lift) and the SVG charts."""

from __future__ import annotations

import pytest
from dashboard_helpers import GUEST, HOST, JOB, sample_job

from dashboard import analysis
from dashboard.charts import Axes, Series, bar_chart, line_chart
from dashboard.dag import dag_svg
from dashboard.schemas import JobAnalysis, JobDetail
from dashboard.store import Store
from dashboard.views import JobView
from fedcore.envelope import Envelope

# Four positives scored 0.9, 0.8, 0.6, 0.3 and four negatives 0.7, 0.4, 0.2, 0.1.
ROC = analysis.Roc(
    fpr=[0.0, 0.0, 0.0, 0.25, 0.25, 0.5, 0.5, 0.75, 1.0],
    tpr=[0.0, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0],
    thresholds=[1.0, 0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1],
)


def test_a_roc_parses_only_from_matching_numeric_lists() -> None:
    assert analysis.Roc.parse({"fpr": [0, 1], "tpr": [0, 1]}) == analysis.Roc(
        [0.0, 1.0], [0.0, 1.0], []
    )
    assert analysis.Roc.parse({"fpr": [0, 1], "tpr": [0]}) is None
    assert analysis.Roc.parse({"fpr": [0, "x"], "tpr": [0, 1]}) is None
    assert analysis.Roc.parse([0, 1]) is None


def test_the_ks_point_is_where_tpr_minus_fpr_peaks() -> None:
    point = analysis.ks_point(ROC)
    assert (point.ks, point.threshold, point.fpr, point.tpr) == (0.5, 0.8, 0.0, 0.5)


def test_rates_at_a_threshold_predict_one_at_or_above_it() -> None:
    assert analysis.rates_at(ROC, 0.5) == (0.25, 0.75)
    assert analysis.rates_at(ROC, 0.95) == (0.0, 0.0)
    assert analysis.rates_at(ROC, 0.0) == (1.0, 1.0)


def test_the_positive_share_comes_from_counts_or_precision_and_recall() -> None:
    counts = {"tp": 3, "fp": 1, "tn": 3, "fn": 1}
    assert analysis.positive_share(ROC, {}, counts) == (0.5, True)
    # At 0.5: tp 3, fp 1 → precision 0.75, recall 0.75; the ROC gives fpr 0.25.
    share = analysis.positive_share(ROC, {"precision": 0.75, "recall": 0.75}, None)
    assert share is not None and share[0] == pytest.approx(0.5) and share[1] is False
    assert analysis.positive_share(ROC, {"precision": 1.0, "recall": 0.5}, None) is None


def test_gain_and_lift_follow_from_the_roc_and_the_share() -> None:
    points = analysis.gains(ROC, 0.5)
    assert points[0].lift is None and points[-1].depth == 1.0 and points[-1].lift == 1.0
    assert points[2].depth == pytest.approx(0.25) and points[2].lift == pytest.approx(2.0)


def test_a_confusion_matrix_has_expected_counts_when_the_size_is_known() -> None:
    c = analysis.confusion_at(ROC, 0.5, samples=8, share=0.5)
    assert c is not None and c.counts == {"tp": 3.0, "fn": 1.0, "fp": 1.0, "tn": 3.0}
    assert (
        analysis.confusion_at(analysis.Roc([0, 1], [0, 1], []), 0.5, samples=8, share=0.5) is None
    )


def test_feature_importance_in_either_shape_largest_first() -> None:
    assert analysis.importance({"x1": 0.1, "host_0": -0.5}) == [("host_0", -0.5), ("x1", 0.1)]
    assert analysis.importance({"features": ["a", "b"], "importance": [1, 2]}) == [
        ("b", 2.0),
        ("a", 1.0),
    ]
    assert analysis.importance({"a": "high"}) is None


def _job_with_runs(store: Store) -> JobView:
    runs = []
    for step, inputs in (
        ("intersect", {"data": "/data/guest.csv"}),
        ("train", {"data": "/out/10000/j/intersect/data"}),
        ("evaluate", {"predictions": "/out/10000/j/train/predictions"}),
    ):
        body = {"component": step, "role": "guest", "args": {"threshold": 0.5}, "inputs": inputs}
        runs.append(Envelope(type="task.run", job_id=JOB, task=step, src=GUEST, body=body))
    store.apply([*sample_job(JOB, 1000.0), *runs])
    job = store.job(JOB)
    assert job is not None
    return job


def test_steps_take_the_dag_from_job_status_and_parameters_from_task_runs(store: Store) -> None:
    job = _job_with_runs(store)
    assert job.pipeline == "hetero-lr"
    steps = {s.name: s for s in JobDetail.of(job).steps}
    assert steps["train"].component == "hetero_lr" and steps["train"].depends == ["intersect"]
    assert steps["evaluate"].depends == ["train"] and steps["evaluate"].args == {"threshold": 0.5}
    svg = dag_svg(JobDetail.of(job).steps, [GUEST, HOST])
    assert svg.count('class="edge"') == 2 and 'data-step="evaluate"' in svg


def test_job_times_give_a_duration(store: Store) -> None:
    job = _job_with_runs(store)
    assert (job.started_at, job.ended_at) == (1001.0, 1040.0)
    assert JobDetail.of(job).duration_s == 39.0


def test_the_analysis_of_a_job_uses_its_latest_roc(store: Store) -> None:
    job = _job_with_runs(store)
    out = JobAnalysis.of(job)
    assert out.roc is not None and out.ks_point is not None and out.step == "evaluate"
    assert out.confusion is None  # the sample job's ROC has no thresholds


def test_charts_are_labelled_svg_and_say_so_when_empty() -> None:
    svg = line_chart(
        [Series("a", [(0, 1.0), (1, 0.5)]), Series("b", [(0, 0.9), (1, 0.7)])],
        Axes("iteration", "loss"),
        title="Loss",
        chart_id="loss",
    )
    assert svg.count("<polyline") == 2 and 'stroke-dasharray="6 3"' in svg and "<title" in svg
    assert "No Loss reported" in line_chart([], Axes("x", "y"), title="Loss", chart_id="l")
    assert bar_chart([("a", 1.0), ("b", -2.0)], title="I", chart_id="i").count("<rect") == 2
