"""The aggregator alone: folding envelopes into job views, with no I/O."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from dashboard_helpers import (
    GUEST,
    HOST,
    JOB,
    LOSSES,
    STEPS,
    job_status,
    log,
    metric,
    sample_job,
    task_status,
)

from dashboard.aggregator import LOG_TAIL, Aggregator, StepView, TaskView, to_jsonable
from dashboard.schemas import JobDetail, JobLogs, JobMetrics
from fedcore.envelope import Envelope

T0 = 1_700_000_000.0
BAD = "bad" + "0" * 29
OLD, MID, NEW = "1" * 32, "2" * 32, "3" * 32


def fold(envs: list[Envelope]) -> Aggregator:
    agg = Aggregator()
    agg.apply_all(envs)
    return agg


def test_a_whole_job_is_folded_into_one_view() -> None:
    agg = fold(sample_job(JOB, T0))
    job = agg.get(JOB)
    assert job is not None
    assert (job.state, job.reason, job.initiator) == ("success", None, GUEST)
    assert job.parties == [f"{GUEST}=guest", f"{HOST}=host"]
    assert [s.name for s in job.ordered_steps()] == STEPS
    assert all(s.state == "success" for s in job.ordered_steps())
    assert set(job.steps["train"].tasks) == {GUEST, HOST}
    assert (job.auc, job.ks) == (0.8125, 0.5)
    assert (job.first_seen, job.last_seen) == (T0, T0 + 40)

    metrics = JobMetrics.of(job)
    assert len(metrics.loss) == 1
    assert metrics.loss[0].step == "train" and metrics.loss[0].party == GUEST
    assert [p.value for p in metrics.loss[0].points] == LOSSES
    assert [p.iteration for p in metrics.loss[0].points] == list(range(len(LOSSES)))
    assert [(c.name, c.value["tpr"]) for c in metrics.curves] == [("roc", [0.0, 0.75, 1.0])]
    assert {m.name: m.value for m in metrics.scalars} == {"auc": 0.8125, "ks": 0.5}


def test_replaying_the_same_records_gives_the_same_metrics_and_steps() -> None:
    envs = sample_job(JOB, T0)
    once, twice = fold(envs), fold(envs + envs)
    a, b = once.get(JOB), twice.get(JOB)
    assert a is not None and b is not None
    assert JobMetrics.of(a) == JobMetrics.of(b)
    assert JobDetail.of(a).model_dump(exclude={"log_counts"}) == JobDetail.of(b).model_dump(
        exclude={"log_counts"}
    )


def test_clear_forgets_everything_and_bumps_the_version() -> None:
    agg = fold(sample_job(JOB, T0))
    version = agg.version
    agg.clear()
    assert len(agg) == 0 and agg.get(JOB) is None and agg.version > version


def test_jobs_are_listed_newest_first_and_filtered_by_state() -> None:
    envs = [
        job_status(OLD, "success", T0),
        job_status(NEW, "running", T0 + 100),
        job_status(MID, "failed", T0 + 50, reason="host: out of memory"),
    ]
    agg = fold(envs)
    assert [j.job_id for j in agg.jobs()] == [NEW, MID, OLD]
    assert [j.job_id for j in agg.jobs(state="failed")] == [MID]
    mid = agg.get(MID)
    assert mid is not None and mid.reason == "host: out of memory"
    assert agg.jobs(state="canceled") == []


def test_a_failed_job_keeps_its_reason_and_the_failing_party() -> None:
    envs = [
        job_status(JOB, "running", T0, steps=["train"]),
        task_status(JOB, "train", GUEST, "running", T0 + 1),
        task_status(JOB, "train", HOST, "failed", T0 + 2, reason="division by zero"),
        job_status(JOB, "failed", T0 + 3, reason="20000: division by zero"),
    ]
    job = fold(envs).get(JOB)
    assert job is not None
    assert (job.state, job.reason) == ("failed", "20000: division by zero")
    step = job.steps["train"]
    assert step.state == "failed"
    assert step.tasks[HOST].reason == "division by zero"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ((), "pending"),
        (("success", "success"), "success"),
        (("success", "running"), "running"),
        (("running", "failed"), "failed"),
        (("success", "canceled"), "canceled"),
        (("success", "waiting"), "waiting"),
    ],
)
def test_a_steps_state_follows_its_parties(states: tuple[str, ...], expected: str) -> None:
    step = StepView("s", {str(i): TaskView(s, None, T0) for i, s in enumerate(states)})
    assert step.state == expected


def test_tasks_alone_make_a_job_of_unknown_state_with_parties_from_the_tasks() -> None:
    agg = fold([task_status(JOB, "intersect", HOST, "running", T0)])
    job = agg.get(JOB)
    assert job is not None and job.state == "unknown"
    assert JobDetail.of(job).parties == [HOST]
    assert [s.name for s in job.ordered_steps()] == ["intersect"]


def test_declared_steps_come_first_in_pipeline_order() -> None:
    envs = [
        task_status(JOB, "train", GUEST, "running", T0),
        job_status(JOB, "running", T0 + 1, steps=["intersect", "train"]),
    ]
    job = fold(envs).get(JOB)
    assert job is not None
    assert [s.name for s in job.ordered_steps()] == ["intersect", "train"]
    assert job.ordered_steps()[0].state == "pending"


def test_parties_given_by_role_are_written_id_equals_role() -> None:
    job = fold([job_status(JOB, "running", T0, parties={"guest": [GUEST], "host": [HOST]})]).get(
        JOB
    )
    assert job is not None and job.parties == [f"{GUEST}=guest", f"{HOST}=host"]


def test_the_final_auc_comes_from_the_latest_step_in_pipeline_order() -> None:
    envs = [
        job_status(JOB, "running", T0, steps=["train", "evaluate"]),
        metric(JOB, "evaluate", GUEST, "auc", 0.9, T0 + 1, None),
        metric(JOB, "train", GUEST, "auc", 0.7, T0 + 2, None),  # arrives later, earlier step
        metric(JOB, "train", GUEST, "auc", 0.6, T0 + 2, iteration=3),  # a series, not final
    ]
    job = fold(envs).get(JOB)
    assert job is not None and job.auc == 0.9 and job.ks is None
    assert [s.name for s in JobMetrics.of(job).series] == ["auc"]


def test_a_later_value_for_the_same_iteration_replaces_the_earlier_one() -> None:
    envs = [
        metric(JOB, "train", GUEST, "loss", 0.9, T0, iteration=0),
        metric(JOB, "train", GUEST, "loss", 0.8, T0 + 1, iteration=0),  # the step's retry
    ]
    job = fold(envs).get(JOB)
    assert job is not None
    assert [(p.iteration, p.value) for p in JobMetrics.of(job).loss[0].points] == [(0, 0.8)]


def test_non_finite_numbers_and_arrays_become_json() -> None:
    envs = [
        metric(JOB, "train", GUEST, "loss", float("nan"), T0, iteration=0),
        metric(JOB, "train", GUEST, "loss", 0.5, T0, iteration=1),
        metric(JOB, "evaluate", GUEST, "ks", float("inf"), T0, None),
        metric(JOB, "evaluate", GUEST, "roc", {"fpr": np.array([0.0, 1.0])}, T0, None),
        metric(JOB, "evaluate", GUEST, "lift", np.array([1.5, np.nan]), T0, None),
    ]
    job = fold(envs).get(JOB)
    assert job is not None
    out = JobMetrics.of(job).model_dump(mode="json")
    json.dumps(out, allow_nan=False)  # what Starlette's JSONResponse insists on
    assert [p["value"] for p in out["loss"][0]["points"]] == [None, 0.5]
    assert out["ks"] is None
    assert {c["name"]: c["value"] for c in out["curves"]} == {
        "lift": [1.5, None],
        "roc": {"fpr": [0.0, 1.0]},
    }


def test_to_jsonable_handles_what_the_codec_can_deliver() -> None:
    assert to_jsonable({1: (np.float32(2.5), b"\x00\x01", 2**70, True)}) == {
        "1": [2.5, "<2 bytes>", 2**70, True]
    }
    assert to_jsonable(-math.inf) is None


@pytest.mark.parametrize(
    "env",
    [
        Envelope(type="job.status", job_id=BAD, src=GUEST, body={"reason": "no state"}),
        Envelope(type="task.status", job_id=BAD, src=GUEST, body={"state": "running"}),
        Envelope(type="metric", job_id=BAD, task="t", src=GUEST, body={"value": 1.0}),
        Envelope(type="metric", job_id=BAD, task="t", src=GUEST, body={"name": "loss"}),
        Envelope(
            type="metric",
            job_id=BAD,
            task="t",
            src=GUEST,
            body={"name": "loss", "value": 1.0, "step": "three"},
        ),
        Envelope(type="log", job_id=BAD, src=GUEST, body={"level": "info"}),
    ],
)
def test_malformed_bodies_are_counted_and_ignored(env: Envelope) -> None:
    agg = Aggregator()
    assert agg.apply(env) is False
    assert agg.skipped == 1 and agg.get(BAD) is None and len(agg) == 0


def test_unknown_types_are_ignored_without_counting() -> None:
    agg = Aggregator()
    assert agg.apply(Envelope(type="fed", job_id=JOB, src=GUEST)) is False
    assert (agg.skipped, agg.applied, len(agg)) == (0, 0, 0)


def test_a_malformed_body_does_not_disturb_a_known_job() -> None:
    agg = fold(sample_job(JOB, T0))
    job = agg.get(JOB)
    assert job is not None
    before = JobMetrics.of(job)
    agg.apply(Envelope(type="metric", job_id=JOB, task="x", src=GUEST, body={"name": "loss"}))
    assert JobMetrics.of(job) == before and job.last_seen == T0 + 40


def test_logs_are_counted_by_level_and_only_a_tail_is_kept() -> None:
    envs = [log(JOB, "train", GUEST, f"line {i}", T0 + i) for i in range(LOG_TAIL + 5)]
    envs.append(log(JOB, "train", HOST, "boom", T0 + 1000, level="error"))
    job = fold(envs).get(JOB)
    assert job is not None
    logs = JobLogs.of(job)
    assert logs.counts == {"info": LOG_TAIL + 5, "error": 1}
    assert len(logs.lines) == LOG_TAIL
    assert logs.lines[-1].line == "boom" and logs.lines[-1].party == HOST


def test_a_peers_task_state_from_fl_in_ctl_counts_but_its_job_status_does_not() -> None:
    peer_task = task_status(JOB, "train", HOST, "failed", T0 + 1, reason="disk full")
    peer_task = peer_task.model_copy(update={"dst": GUEST})
    peer_job = job_status(JOB, "failed", T0 + 2).model_copy(update={"src": HOST, "dst": GUEST})
    agg = fold([job_status(JOB, "running", T0), peer_task, peer_job])
    job = agg.get(JOB)
    assert job is not None
    assert job.state == "running"  # this party's flow_server has not said otherwise yet
    assert job.steps["train"].tasks[HOST].state == "failed"
    assert job.steps["train"].tasks[HOST].reason == "disk full"


def _decision(job_id: str, decision: str, ms: int, **body: object) -> Envelope:
    return Envelope(
        type="proposal.decision",
        job_id=job_id,
        src=HOST,
        ts=ms / 1000,
        body={
            "initiator": GUEST,
            "decision": decision,
            "rule": "ACCEPT_POLICY=manual",
            "decided_by": "policy",
            "decided_ms": ms,
            **body,
        },
    )


def test_decisions_about_a_proposal_are_shown_once_each_in_order() -> None:
    held = _decision(JOB, "pending_approval", 1_000)
    approved = _decision(JOB, "approved", 2_000, decided_by="alice", rule="approved by …")
    pending = job_status(JOB, "pending_approval", 1.0, initiator=GUEST)
    agg = fold([pending, held, approved, held])  # a replayed record changes nothing
    job = agg.get(JOB)
    assert job is not None and job.state == "pending_approval"
    detail = JobDetail.of(job)
    assert [(d.decision, d.decided_by) for d in detail.decisions] == [
        ("pending_approval", "policy"),
        ("approved", "alice"),
    ]
    from dashboard import render

    html = render.decisions_section(detail)
    assert 'action="/jobs/' in html and "/approve" in html and "/reject" in html
    assert "alice" in html
    done = render.decisions_section(detail.model_copy(update={"state": "running"}))
    assert "Decisions" in done and "<form" not in done
    assert render.decisions_section(JobDetail.of(fold(sample_job(BAD, T0)).get(BAD))) == ""  # type: ignore[arg-type]


def test_a_malformed_decision_is_skipped() -> None:
    agg = fold([_decision(JOB, "accepted", 1_000, decided_ms="soon")])
    assert agg.get(JOB) is None and agg.skipped == 1
