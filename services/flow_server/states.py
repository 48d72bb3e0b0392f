"""The lifecycles of jobs and tasks: their states and the transitions allowed between them.

The tables are data; ``check_job_transition`` and ``check_task_transition`` are the only way the
flow_server decides whether a state may be written. An illegal transition raises
``IllegalTransition`` naming the job (and step and party), the current state and the new one, so a
bug or a contradictory event never silently overwrites a state.

Jobs: ``waiting → running ⇄ paused → success | failed | canceled | timeout``, plus ``rejected``;
a job proposed to a party whose policy wants its operator's decision starts there in
``pending_approval``::

    pending_approval ─┬─> waiting (approved)
                      └─> rejected | failed | canceled | timeout
    waiting ─┬─> running ⇄ paused
             │     │         │
             │     └────┬────┘
             │          ├─> success (from running only: nothing runs while paused)
             │          └─> failed | canceled | timeout
             └─> rejected | failed | canceled | timeout

A rerun (from the failed step) is the one way out of an ending: ``failed | canceled | timeout →
running`` through ``check_job_rerun`` only, never through an ordinary state write, so a late
event can never revive a job.

``waiting → failed``: a party that accepted may hear that the job failed elsewhere before its
``job.start`` arrives (a third party's failure, or the initiator failing to start); it must end too
rather than wait forever. ``waiting → timeout``: the acceptance deadline passed.

``pending_approval`` exists only on a party a job was proposed to (``flow_server.approval``): its
operator approves (``→ waiting``, and ``job.accept`` goes to the initiator) or rejects
(``→ rejected``); the acceptance deadline (``→ timeout``) or the job ending elsewhere (``failed``,
``canceled``, ``timeout``, told by another party) ends it too.

Tasks (one step on one party, one attempt): ``waiting → running → success | failed | canceled |
timeout``; a task may also end straight from ``waiting`` (a status whose ``running`` was not seen,
or a step canceled before it started). A newer attempt of a task (retry, rerun) starts a new life:
it is checked as a transition out of ``waiting``.

What the protocol does with an event that asks for a state change (documented here, applied in
``flow_server.protocol``):

* the same state again (a re-delivered or duplicate status) is an idempotent no-op;
* a *stale* task state — one the task has already passed, e.g. a late ``running`` after
  ``success`` of the same attempt — is ignored: events of one task may arrive out of order;
* a job-ending status from a peer about a job that has already ended here is ignored (both
  parties may end the job on their own, from the same task failure);
* anything else the table does not allow (``success → failed`` for the same attempt, a peer
  saying ``rejected`` about a running job) raises ``IllegalTransition``; the consumer skips that
  event and its transaction writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "JOB_TRANSITIONS",
    "TASK_TRANSITIONS",
    "IllegalTransition",
    "JobState",
    "TaskState",
    "check_job_rerun",
    "check_job_transition",
    "check_task_transition",
    "is_stale_task_state",
]


class JobState:
    PENDING_APPROVAL = "pending_approval"
    WAITING = "waiting"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"
    REJECTED = "rejected"

    ALL = (
        PENDING_APPROVAL,
        WAITING,
        RUNNING,
        PAUSED,
        SUCCESS,
        FAILED,
        CANCELED,
        TIMEOUT,
        REJECTED,
    )
    TERMINAL = frozenset({SUCCESS, FAILED, CANCELED, TIMEOUT, REJECTED})
    # endings a rerun may start again from
    RERUNNABLE = frozenset({FAILED, CANCELED, TIMEOUT})


class TaskState:
    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMEOUT = "timeout"

    ALL = (WAITING, RUNNING, SUCCESS, FAILED, CANCELED, TIMEOUT)
    TERMINAL = frozenset({SUCCESS, FAILED, CANCELED, TIMEOUT})


_J = JobState
JOB_TRANSITIONS: Mapping[str, frozenset[str]] = {
    _J.PENDING_APPROVAL: frozenset({_J.WAITING, _J.REJECTED, _J.FAILED, _J.CANCELED, _J.TIMEOUT}),
    _J.WAITING: frozenset({_J.RUNNING, _J.REJECTED, _J.FAILED, _J.CANCELED, _J.TIMEOUT}),
    _J.RUNNING: frozenset({_J.PAUSED, _J.SUCCESS, _J.FAILED, _J.CANCELED, _J.TIMEOUT}),
    _J.PAUSED: frozenset({_J.RUNNING, _J.FAILED, _J.CANCELED, _J.TIMEOUT}),
    **{s: frozenset() for s in _J.TERMINAL},
}

_T = TaskState
TASK_TRANSITIONS: Mapping[str, frozenset[str]] = {
    _T.WAITING: frozenset({_T.RUNNING, _T.SUCCESS, _T.FAILED, _T.CANCELED, _T.TIMEOUT}),
    _T.RUNNING: frozenset({_T.SUCCESS, _T.FAILED, _T.CANCELED, _T.TIMEOUT}),
    **{s: frozenset() for s in _T.TERMINAL},
}


class IllegalTransition(ValueError):
    """A state change the lifecycle does not allow; nothing was written."""

    def __init__(self, what: str, current: str, new: str) -> None:
        super().__init__(f"{what}: illegal transition {current!r} → {new!r}")
        self.what = what
        self.current = current
        self.new = new


def _check(table: Mapping[str, frozenset[str]], what: str, current: str, new: str) -> None:
    if new not in table:
        raise IllegalTransition(what, current, new)
    if current != new and new not in table.get(current, frozenset()):
        raise IllegalTransition(what, current, new)


def check_job_transition(job_id: str, current: str, new: str) -> None:
    """Raise ``IllegalTransition`` unless job ``job_id`` may go from ``current`` to ``new``.

    Staying in the same (known) state is allowed: it writes nothing.
    """
    _check(JOB_TRANSITIONS, f"job {job_id}", current, new)


def check_job_rerun(job_id: str, current: str) -> None:
    """Raise ``IllegalTransition`` unless job ``job_id`` may be rerun from state ``current``."""
    if current not in JobState.RERUNNABLE:
        raise IllegalTransition(f"job {job_id} (rerun)", current, JobState.RUNNING)


def check_task_transition(
    job_id: str, step: str, party: str, current: str, new: str, *, new_attempt: bool = False
) -> None:
    """Raise ``IllegalTransition`` unless the task may go from ``current`` to ``new``.

    A ``new_attempt`` starts the task's lifecycle again, so it is checked from ``waiting``.
    """
    start = TaskState.WAITING if new_attempt else current
    _check(TASK_TRANSITIONS, f"job {job_id} step {step!r} on party {party}", start, new)


def _reachable(table: Mapping[str, frozenset[str]], start: str) -> frozenset[str]:
    seen = {start}
    todo = [start]
    while todo:
        for nxt in table.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen - {start})


def is_stale_task_state(current: str, new: str) -> bool:
    """``new`` is a state the task has already left behind (it can reach ``current``)."""
    return current in _reachable(TASK_TRANSITIONS, new) and new not in _reachable(
        TASK_TRANSITIONS, current
    )
