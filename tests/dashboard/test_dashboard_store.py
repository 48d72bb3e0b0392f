"""The store alone: envelopes folded into the dashboard's tables and the job views read back, on
SQLite and PostgreSQL."""

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

from backends import Databases
from dashboard import render
from dashboard.db import upgrade_to_head
from dashboard.schemas import JobDetail, JobLogs, JobMetrics
from dashboard.store import LOG_LINES_PER_TASK, Outcome, Store
from dashboard.views import LOG_TAIL, JobView, StepView, TaskView, to_jsonable
from fedcore.dburl import make_engine
from fedcore.envelope import Envelope

T0 = 1_700_000_000.0
BAD = "bad" + "0" * 29
OLD, MID, NEW = "1" * 32, "2" * 32, "3" * 32


def view(store: Store, job_id: str = JOB) -> JobView:
    job = store.job(job_id)
    assert job is not None
    return job


def test_a_whole_job_is_folded_into_one_view(store: Store) -> None:
    store.apply(sample_job(JOB, T0))
    job = view(store)
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


def test_one_batch_or_one_envelope_at_a_time_give_the_same_view(store: Store) -> None:
    envs = sample_job(JOB, T0)
    store.apply(envs)
    other = [e.model_copy(update={"job_id": OLD}) for e in envs]
    for env in other:
        store.apply([env])
    a, b = JobDetail.of(view(store)), JobDetail.of(view(store, OLD))
    assert a.model_dump(exclude={"job_id"}) == b.model_dump(exclude={"job_id"})


def test_reading_the_same_records_again_changes_nothing(store: Store) -> None:
    """At least once: a restart reads again what it wrote but had not committed to Kafka."""
    envs = [*sample_job(JOB, T0), log(JOB, "train", HOST, "second line", T0 + 30)]
    store.apply(envs)
    before = view(store)
    store.apply(envs)
    store.apply(envs + envs)  # the same records twice in one batch, too
    after = view(store)
    assert JobMetrics.of(after) == JobMetrics.of(before)
    assert JobDetail.of(after) == JobDetail.of(before)
    assert JobLogs.of(after) == JobLogs.of(before)
    assert before.log_counts == {"info": 2}


def test_jobs_are_listed_newest_first_filtered_and_paged_in_the_database(store: Store) -> None:
    store.apply(
        [
            job_status(OLD, "success", T0),
            job_status(NEW, "running", T0 + 100),
            job_status(MID, "failed", T0 + 50, reason="host: out of memory"),
        ]
    )
    assert [j.job_id for j in store.jobs()] == [NEW, MID, OLD]
    assert [j.job_id for j in store.jobs(state="failed")] == [MID]
    assert [j.job_id for j in store.jobs(limit=1, offset=1)] == [MID]
    assert [j.job_id for j in store.jobs(search="222")] == [MID]
    assert store.jobs(search="2_2") == []  # "_" is a character here, not a wildcard
    assert store.total() == 3 and store.total(state="running") == 1
    assert store.states() == {"failed": 1, "running": 1, "success": 1}
    assert store.job_ids(2) == [NEW, MID]
    assert view(store, MID).reason == "host: out of memory"
    assert store.jobs(state="canceled") == [] and store.job("f" * 32) is None


def test_a_summary_has_its_steps_and_final_metrics(store: Store) -> None:
    store.apply(sample_job(JOB, T0))
    (summary,) = store.jobs()
    assert (summary.auc, summary.ks) == (0.8125, 0.5)
    assert [s.state for s in summary.ordered_steps()] == ["success"] * 3
    assert summary.series == {} and summary.curves == {}  # a summary needs no more


def test_a_failed_job_keeps_its_reason_and_the_failing_party(store: Store) -> None:
    store.apply(
        [
            job_status(JOB, "running", T0, steps=["train"]),
            task_status(JOB, "train", GUEST, "running", T0 + 1),
            task_status(JOB, "train", HOST, "failed", T0 + 2, reason="division by zero"),
            job_status(JOB, "failed", T0 + 3, reason="20000: division by zero"),
        ]
    )
    job = view(store)
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


def test_tasks_alone_make_a_job_of_unknown_state_with_parties_from_the_tasks(
    store: Store,
) -> None:
    store.apply([task_status(JOB, "intersect", HOST, "running", T0)])
    job = view(store)
    assert job.state == "unknown"
    assert JobDetail.of(job).parties == [HOST]
    assert [s.name for s in job.ordered_steps()] == ["intersect"]


def test_declared_steps_come_first_in_pipeline_order(store: Store) -> None:
    store.apply(
        [
            task_status(JOB, "train", GUEST, "running", T0),
            job_status(JOB, "running", T0 + 1, steps=["intersect", "train"]),
        ]
    )
    job = view(store)
    assert [s.name for s in job.ordered_steps()] == ["intersect", "train"]
    assert job.ordered_steps()[0].state == "pending"


def test_parties_given_by_role_are_written_id_equals_role(store: Store) -> None:
    store.apply([job_status(JOB, "running", T0, parties={"guest": [GUEST], "host": [HOST]})])
    assert view(store).parties == [f"{GUEST}=guest", f"{HOST}=host"]


def test_the_final_auc_comes_from_the_latest_step_in_pipeline_order(store: Store) -> None:
    store.apply(
        [
            job_status(JOB, "running", T0, steps=["train", "evaluate"]),
            metric(JOB, "evaluate", GUEST, "auc", 0.9, T0 + 1, None),
            metric(JOB, "train", GUEST, "auc", 0.7, T0 + 2, None),  # arrives later, earlier step
            metric(JOB, "train", GUEST, "auc", 0.6, T0 + 2, iteration=3),  # a series, not final
        ]
    )
    job = view(store)
    assert job.auc == 0.9 and job.ks is None
    assert [s.name for s in JobMetrics.of(job).series] == ["auc"]
    assert store.jobs()[0].auc == 0.9


def test_a_later_value_for_the_same_iteration_replaces_the_earlier_one(store: Store) -> None:
    store.apply(
        [
            metric(JOB, "train", GUEST, "loss", 0.9, T0, iteration=0),
            metric(JOB, "train", GUEST, "loss", 0.8, T0 + 1, iteration=0),  # the step's retry
        ]
    )
    store.apply([metric(JOB, "train", GUEST, "loss", 0.7, T0 + 2, iteration=1)])
    points = JobMetrics.of(view(store)).loss[0].points
    assert [(p.iteration, p.value) for p in points] == [(0, 0.8), (1, 0.7)]


def test_non_finite_numbers_and_arrays_become_json(store: Store) -> None:
    store.apply(
        [
            metric(JOB, "train", GUEST, "loss", float("nan"), T0, iteration=0),
            metric(JOB, "train", GUEST, "loss", 0.5, T0, iteration=1),
            metric(JOB, "evaluate", GUEST, "ks", float("inf"), T0, None),
            metric(JOB, "evaluate", GUEST, "roc", {"fpr": np.array([0.0, 1.0])}, T0, None),
            metric(JOB, "evaluate", GUEST, "lift", np.array([1.5, np.nan]), T0, None),
        ]
    )
    out = JobMetrics.of(view(store)).model_dump(mode="json")
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
def test_malformed_bodies_are_counted_and_ignored(store: Store, env: Envelope) -> None:
    assert store.apply([env]) == Outcome(applied=0, skipped=1)
    assert store.job(BAD) is None and store.total() == 0


def test_unknown_types_are_ignored_without_counting(store: Store) -> None:
    assert store.apply([Envelope(type="fed", job_id=JOB, src=GUEST)]) == Outcome(0, 0)
    assert store.total() == 0


def test_a_malformed_body_does_not_disturb_a_known_job(store: Store) -> None:
    store.apply(sample_job(JOB, T0))
    before = JobMetrics.of(view(store))
    bad = Envelope(type="metric", job_id=JOB, task="x", src=GUEST, body={"name": "loss"})
    assert store.apply([bad]) == Outcome(applied=0, skipped=1)
    assert JobMetrics.of(view(store)) == before and view(store).last_seen == T0 + 40


def test_logs_are_counted_by_level_and_the_last_lines_of_each_task_are_kept(
    databases: Databases,
) -> None:
    engine = make_engine(databases.new("logs"))
    upgrade_to_head(engine)
    small = Store(engine, log_lines=3)
    try:
        small.apply([log(JOB, "train", GUEST, f"line {i}", T0 + i) for i in range(4)])
        small.apply([log(JOB, "train", GUEST, f"line {i}", T0 + i) for i in range(4, 6)])
        small.apply([log(JOB, "train", HOST, "boom", T0 + 1000, level="error")])
        job = view(small)
        assert job.log_counts == {"info": 6, "error": 1}
        kept = [(x.party, x.line) for x in small.log_lines(JOB)]
        assert kept == [(GUEST, "line 3"), (GUEST, "line 4"), (GUEST, "line 5"), (HOST, "boom")]
        assert [x.line for x in JobLogs.of(job).lines] == ["line 3", "line 4", "line 5", "boom"]
    finally:
        engine.dispose()


def test_a_job_view_shows_the_last_lines_of_the_job(store: Store) -> None:
    assert LOG_LINES_PER_TASK > LOG_TAIL
    store.apply([log(JOB, "train", GUEST, f"line {i}", T0 + i) for i in range(LOG_TAIL + 5)])
    lines = JobLogs.of(view(store)).lines
    assert len(lines) == LOG_TAIL and lines[-1].line == f"line {LOG_TAIL + 4}"
    assert len(store.log_lines(JOB)) == LOG_TAIL + 5


def test_a_peers_task_state_from_fl_in_ctl_counts_but_its_job_status_does_not(
    store: Store,
) -> None:
    peer_task = task_status(JOB, "train", HOST, "failed", T0 + 1, reason="disk full")
    peer_task = peer_task.model_copy(update={"dst": GUEST})
    peer_job = job_status(JOB, "failed", T0 + 2).model_copy(update={"src": HOST, "dst": GUEST})
    store.apply([job_status(JOB, "running", T0), peer_task, peer_job])
    job = view(store)
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


def test_decisions_about_a_proposal_are_shown_once_each_in_order(store: Store) -> None:
    held = _decision(JOB, "pending_approval", 1_000)
    approved = _decision(JOB, "approved", 2_000, decided_by="alice", rule="approved by …")
    pending = job_status(JOB, "pending_approval", 1.0, initiator=GUEST)
    store.apply([pending, held, approved, held])  # a record read again changes nothing
    job = view(store)
    assert job.state == "pending_approval"
    detail = JobDetail.of(job)
    assert [(d.decision, d.decided_by) for d in detail.decisions] == [
        ("pending_approval", "policy"),
        ("approved", "alice"),
    ]
    html = render.decisions_section(detail)
    assert 'action="/jobs/' in html and "/approve" in html and "/reject" in html
    assert "alice" in html
    done = render.decisions_section(detail.model_copy(update={"state": "running"}))
    assert "Decisions" in done and "<form" not in done
    store.apply(sample_job(BAD, T0))
    assert render.decisions_section(JobDetail.of(view(store, BAD))) == ""


def test_a_malformed_decision_is_skipped(store: Store) -> None:
    assert store.apply([_decision(JOB, "accepted", 1_000, decided_ms="soon")]).skipped == 1
    assert store.job(JOB) is None
