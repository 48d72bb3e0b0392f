"""The dashboard shows where each party's step computed (its ``computing`` metric) and, for
Spark, what its stages took (its ``spark_stages`` metric)."""

from __future__ import annotations

from dashboard_helpers import GUEST, HOST, metric, sample_job

from dashboard.render import steps_table
from dashboard.schemas import JobDetail
from dashboard.store import Store

JOB = "e" * 32  # job ids are 32 hex digits
T0 = 1_700_000_000.0


def test_each_partys_engine_is_shown_with_its_task(store: Store) -> None:
    envs = sample_job(JOB, T0)
    spark = {"engine": "spark", "master": "local[2]", "executors": 2}
    envs.append(metric(JOB, "train", GUEST, "computing", spark, T0 + 21, None))
    envs.append(metric(JOB, "train", HOST, "computing", {"engine": "local"}, T0 + 21, None))
    envs.append(metric(JOB, "intersect", HOST, "computing", "not a mapping", T0 + 11, None))
    store.apply(envs)
    job = store.job(JOB)
    assert job is not None
    detail = JobDetail.of(job)
    train = next(s for s in detail.steps if s.name == "train")
    assert {t.party: t.engine for t in train.tasks} == {GUEST: "spark (local[2])", HOST: "local"}
    intersect = next(s for s in detail.steps if s.name == "intersect")
    assert all(t.engine is None for t in intersect.tasks)
    html = steps_table(detail)
    assert f'<td data-party="{GUEST}">' in html and "on spark (local[2])" in html
    assert html.count('class="engine muted"') == 2


def test_a_spark_steps_stage_timings_are_shown_with_its_task(store: Store) -> None:
    envs = sample_job(JOB, T0)
    stages = {
        "encrypt_chunk_to_ints": {"seconds": 12.5, "jobs": 3, "stages": 3, "tasks": 6},
        "node_products": {"seconds": 30.25, "jobs": 9, "stages": 18, "tasks": 36},
        "<script>": {"seconds": 0.5, "jobs": 1, "stages": 1, "tasks": 2},
        "negative": {"seconds": -1, "jobs": 1, "stages": 1, "tasks": 1},
        "not counts": {"seconds": 1, "jobs": "many", "stages": 1, "tasks": 1},
        "a boolean": {"seconds": 1, "jobs": True, "stages": 1, "tasks": 1},
    }
    envs.append(metric(JOB, "train", GUEST, "spark_stages", stages, T0 + 30, None))
    envs.append(metric(JOB, "train", HOST, "spark_stages", ["not", "a", "mapping"], T0 + 30, None))
    store.apply(envs)
    job = store.job(JOB)
    assert job is not None
    detail = JobDetail.of(job)
    train = next(s for s in detail.steps if s.name == "train")
    guest = next(t for t in train.tasks if t.party == GUEST)
    host = next(t for t in train.tasks if t.party == HOST)
    assert [(s.label, s.seconds, s.jobs, s.stages, s.tasks) for s in guest.stages] == [
        ("node_products", 30.25, 9, 18, 36),
        ("encrypt_chunk_to_ints", 12.5, 3, 3, 6),
        ("<script>", 0.5, 1, 1, 2),
    ]
    assert host.stages == []
    html = steps_table(detail)
    assert html.count('<details class="stages">') == 1
    assert "Spark stages: 43.2 s" in html
    assert "<code>node_products</code></th><td>30.25 s</td><td>9</td><td>18</td><td>36</td>" in html
    assert "&lt;script&gt;" in html and "<script>" not in html
