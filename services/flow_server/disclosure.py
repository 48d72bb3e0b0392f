"""What the other parties are told of this party's tasks: states, and failures by code only.

A task of this party that failed, timed out or was canceled keeps its full reason here (the
worker's local detail: an exception's text, a stderr tail, which may quote a path, a header or a
cell). The other parties get ``fedcore.failures.public_reason`` of its code instead, in the
forwarded ``task.status`` and in the job's reason (``job.status``), which is made from these.
Another party's task carries the reason that party chose to send.
"""

from __future__ import annotations

from typing import Final

from fedcore import failures
from flow_server.models import Task, TaskState

# the code a failure without one reads as, by the state it ended in
_BY_STATE: Final = {
    TaskState.FAILED: failures.STEP_FAILED,
    TaskState.TIMEOUT: failures.TIMED_OUT,
    TaskState.CANCELED: failures.STOPPED,
}


def task_reason(task: Task, me: str) -> str | None:
    """``task``'s reason as every party may see it (this party ``me``'s failures by code)."""
    if task.party_id != me:
        return task.reason
    default = _BY_STATE.get(task.state)
    if default is None:
        return None
    return failures.public_reason(task.code or default)


def task_code(state: str, code: object) -> str | None:
    """The code stored with this party's task in ``state``: the worker's, if it is a known one,
    else the state's default; None for a state that is not an ending short of success."""
    default = _BY_STATE.get(state)
    if default is None:
        return None
    return code if isinstance(code, str) and code in failures.CODES else default
