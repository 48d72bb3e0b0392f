"""The job and task transition tables: every allowed move passes, the others raise."""

from __future__ import annotations

import typing

import pytest

from flow_server.routes.jobs import StateFilter
from flow_server.states import (
    JOB_TRANSITIONS,
    TASK_TRANSITIONS,
    IllegalTransition,
    JobState,
    TaskState,
    check_job_transition,
    check_task_transition,
    is_stale_task_state,
)

J, T = JobState, TaskState

ALLOWED_JOB = [(a, b) for a, targets in JOB_TRANSITIONS.items() for b in sorted(targets)]
ALLOWED_TASK = [(a, b) for a, targets in TASK_TRANSITIONS.items() for b in sorted(targets)]
ILLEGAL_JOB = [(a, b) for a in J.ALL for b in J.ALL if a != b and b not in JOB_TRANSITIONS[a]]
ILLEGAL_TASK = [(a, b) for a in T.ALL for b in T.ALL if a != b and b not in TASK_TRANSITIONS[a]]


def test_the_job_lifecycle_of_the_issue() -> None:
    assert set(JOB_TRANSITIONS) == set(J.ALL)
    assert JOB_TRANSITIONS[J.PENDING_APPROVAL] == {
        J.WAITING,
        J.REJECTED,
        J.FAILED,
        J.CANCELED,
        J.TIMEOUT,
    }
    assert JOB_TRANSITIONS[J.WAITING] == {J.RUNNING, J.REJECTED, J.FAILED, J.CANCELED, J.TIMEOUT}
    assert JOB_TRANSITIONS[J.RUNNING] == {J.PAUSED, J.SUCCESS, J.FAILED, J.CANCELED, J.TIMEOUT}
    assert JOB_TRANSITIONS[J.PAUSED] == {J.RUNNING, J.FAILED, J.CANCELED, J.TIMEOUT}
    assert {s for s, targets in JOB_TRANSITIONS.items() if not targets} == J.TERMINAL


def test_the_task_lifecycle() -> None:
    assert set(TASK_TRANSITIONS) == set(T.ALL)
    assert TASK_TRANSITIONS[T.RUNNING] == {T.SUCCESS, T.FAILED, T.CANCELED, T.TIMEOUT}
    assert {s for s, targets in TASK_TRANSITIONS.items() if not targets} == T.TERMINAL


@pytest.mark.parametrize(("current", "new"), ALLOWED_JOB)
def test_allowed_job_transitions(current: str, new: str) -> None:
    check_job_transition("j1", current, new)


@pytest.mark.parametrize(("current", "new"), ALLOWED_TASK)
def test_allowed_task_transitions(current: str, new: str) -> None:
    check_task_transition("j1", "train", "10000", current, new)


@pytest.mark.parametrize("state", J.ALL)
def test_staying_in_a_job_state_is_allowed(state: str) -> None:
    check_job_transition("j1", state, state)


@pytest.mark.parametrize(("current", "new"), ILLEGAL_JOB)
def test_illegal_job_transitions_raise(current: str, new: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_job_transition("j1", current, new)
    assert (info.value.current, info.value.new) == (current, new)
    assert "job j1" in str(info.value) and current in str(info.value) and new in str(info.value)


@pytest.mark.parametrize(("current", "new"), ILLEGAL_TASK)
def test_illegal_task_transitions_raise(current: str, new: str) -> None:
    with pytest.raises(IllegalTransition, match=r"job j1 step 'train' on party 10000"):
        check_task_transition("j1", "train", "10000", current, new)


def test_some_illegal_moves_by_name() -> None:
    for current, new in [
        (J.SUCCESS, J.RUNNING),
        (J.FAILED, J.SUCCESS),
        (J.RUNNING, J.REJECTED),
        (J.PAUSED, J.SUCCESS),
        (J.WAITING, J.PAUSED),
        (J.WAITING, J.SUCCESS),
        (J.CANCELED, J.WAITING),
    ]:
        with pytest.raises(IllegalTransition):
            check_job_transition("j1", current, new)
    with pytest.raises(IllegalTransition):
        check_task_transition("j1", "s", "p", T.SUCCESS, T.FAILED)


def test_unknown_states_raise() -> None:
    with pytest.raises(IllegalTransition):
        check_job_transition("j1", J.RUNNING, "exploded")
    with pytest.raises(IllegalTransition):
        check_job_transition("j1", "exploded", "exploded")
    with pytest.raises(IllegalTransition):
        check_task_transition("j1", "s", "p", T.RUNNING, "paused")


def test_a_new_attempt_starts_the_task_again() -> None:
    check_task_transition("j1", "s", "p", T.FAILED, T.RUNNING, new_attempt=True)
    check_task_transition("j1", "s", "p", T.RUNNING, T.RUNNING, new_attempt=True)
    with pytest.raises(IllegalTransition):
        check_task_transition("j1", "s", "p", T.FAILED, T.RUNNING)


def test_stale_task_states() -> None:
    assert is_stale_task_state(T.SUCCESS, T.RUNNING)
    assert is_stale_task_state(T.RUNNING, T.WAITING)
    assert is_stale_task_state(T.FAILED, T.WAITING)
    assert not is_stale_task_state(T.RUNNING, T.SUCCESS)
    assert not is_stale_task_state(T.SUCCESS, T.FAILED)  # contradictory, not stale
    assert not is_stale_task_state(T.RUNNING, T.RUNNING)


def test_the_api_state_filter_lists_every_job_state() -> None:
    assert set(typing.get_args(StateFilter)) == set(J.ALL)


def test_the_wire_knows_every_job_state() -> None:
    from fedcore.messages import JobStateName

    assert set(typing.get_args(JobStateName)) == set(J.ALL)
