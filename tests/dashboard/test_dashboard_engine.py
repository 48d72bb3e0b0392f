"""The dashboard shows where each party's step computed (its ``computing`` metric)."""

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
