"""The pure DAG logic: which steps a party may start, when a job has ended, input paths."""

from __future__ import annotations

import pytest
from flow_helpers import CATALOG, PIPELINE

from flow_server.dsl import parse_pipeline
from flow_server.scheduler import (
    TaskView,
    UnresolvedInput,
    job_outcome,
    participants,
    ready_steps,
    resolve_inputs,
    step_done,
)

P = parse_pipeline(PIPELINE, CATALOG)
PARTIES = {"10000": "guest", "20000": "host"}
OK = TaskView("success", outputs={"data": "/o/i/data", "model": "/o/t/m", "predictions": "/o/p"})


def names(steps: list) -> list[str]:
    return [s.name for s in steps]


def test_participants_follow_component_roles() -> None:
    assert participants(P.step("intersect"), PARTIES) == ["10000", "20000"]
    assert participants(P.step("evaluate"), PARTIES) == ["10000"]


def test_first_step_is_ready_on_both_parties() -> None:
    assert names(ready_steps(P, PARTIES, "10000", {})) == ["intersect"]
    assert names(ready_steps(P, PARTIES, "20000", {})) == ["intersect"]


def test_a_dispatched_step_is_not_ready_again() -> None:
    tasks = {("intersect", "10000"): TaskView("waiting")}
    assert ready_steps(P, PARTIES, "10000", tasks) == []


def test_a_step_is_done_only_when_every_participant_succeeded() -> None:
    tasks = {("intersect", "10000"): OK, ("intersect", "20000"): TaskView("running")}
    assert not step_done(P.step("intersect"), PARTIES, tasks)
    assert ready_steps(P, PARTIES, "10000", tasks) == []
    tasks[("intersect", "20000")] = OK
    assert step_done(P.step("intersect"), PARTIES, tasks)
    assert names(ready_steps(P, PARTIES, "10000", tasks)) == ["train"]
    assert names(ready_steps(P, PARTIES, "20000", tasks)) == ["train"]


def test_a_party_never_runs_a_step_its_role_takes_no_part_in() -> None:
    tasks = {(s, p): OK for s in ("intersect", "train") for p in PARTIES}
    assert names(ready_steps(P, PARTIES, "10000", tasks)) == ["evaluate"]
    assert ready_steps(P, PARTIES, "20000", tasks) == []


def test_outcome_running_success_failed() -> None:
    assert job_outcome(P, PARTIES, {}).state == "running"
    tasks = {(s, p): OK for s in ("intersect", "train") for p in PARTIES}
    assert job_outcome(P, PARTIES, tasks).state == "running"
    tasks[("evaluate", "10000")] = OK
    assert job_outcome(P, PARTIES, tasks).state == "success"
    tasks[("train", "20000")] = TaskView("failed", "out of memory")
    out = job_outcome(P, PARTIES, tasks)
    assert out.state == "failed"
    assert out.reason == "step 'train' failed on party 20000: out of memory"


def test_failure_wins_over_unfinished_steps() -> None:
    tasks = {("intersect", "20000"): TaskView("failed", "no such file")}
    assert job_outcome(P, PARTIES, tasks).state == "failed"


def test_inputs_resolve_to_args_and_local_outputs() -> None:
    assert resolve_inputs(P.step("intersect"), {"input": "/d/g.csv"}, "10000", PARTIES, {}) == {
        "data": "/d/g.csv"
    }
    tasks = {("intersect", "10000"): OK, ("intersect", "20000"): OK}
    assert resolve_inputs(P.step("train"), {}, "10000", PARTIES, tasks) == {"data": "/o/i/data"}
    with pytest.raises(UnresolvedInput):
        resolve_inputs(P.step("intersect"), {}, "10000", PARTIES, {})
    bare = {("intersect", "10000"): TaskView("success")}
    with pytest.raises(UnresolvedInput, match="no output 'data'"):
        resolve_inputs(P.step("train"), {}, "10000", PARTIES, bare)


def test_three_parties_two_hosts() -> None:
    parties = {"1": "guest", "2": "host", "3": "host"}
    tasks = {("intersect", "1"): OK, ("intersect", "2"): OK}
    assert ready_steps(P, parties, "1", tasks) == []  # host 3 has not finished
    tasks[("intersect", "3")] = OK
    assert names(ready_steps(P, parties, "3", tasks)) == ["train"]
