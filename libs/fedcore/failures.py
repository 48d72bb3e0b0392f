"""Why a step failed, as other parties may be told: an error code, never the text behind it.

A step's failure has two forms. The *local detail* (the exception's type and message, a stderr
tail) may quote a path, a CSV header or a cell of the party's data: it stays on the party, in its
database, logs and dashboard. What is forwarded to the other parties (``task.status`` and
``job.status`` reasons) is :func:`public_reason`: the code and a fixed sentence chosen by code,
so nothing the step or its data produced can cross. A code that is missing or unknown reads as
:data:`STEP_FAILED`, so a failure nobody classified still says nothing.

The task_engine attaches the code (``task.status`` body ``code``): the step process classifies
its exception (``fedalgo.errors.failure_code``), the worker its own failures (crash, timeout,
stop, a bad frame, a runtime that could not start the step).
"""

from __future__ import annotations

from typing import Final

from fedcore.floors import FLOOR_NAMES

BAD_ARGUMENTS: Final = "bad_arguments"
BAD_DATA: Final = "bad_data"
INPUT_UNREADABLE: Final = "input_unreadable"
PEER_PROTOCOL: Final = "peer_protocol"
FEDERATION: Final = "federation_failed"
OUT_OF_MEMORY: Final = "out_of_memory"
STEP_ERROR: Final = "step_error"
STEP_CRASHED: Final = "step_crashed"
STEP_PROTOCOL: Final = "step_protocol"
RUNTIME_FAILED: Final = "runtime_failed"
TIMED_OUT: Final = "timed_out"
STOPPED: Final = "stopped"
WORKER_LOST: Final = "worker_lost"
STEP_FAILED: Final = "step_failed"
# "floor.<name>": a security floor of the failing party refused the step (the name is policy)
FLOOR_PREFIX: Final = "floor."

_SENTENCES: Final = {
    BAD_ARGUMENTS: "an argument of the step is missing or out of range",
    BAD_DATA: "the party's input data cannot be used by this step",
    INPUT_UNREADABLE: "the party could not read an input or write an output",
    PEER_PROTOCOL: "another party sent a message the protocol does not allow",
    FEDERATION: "a message between the parties did not arrive, or the run was aborted",
    OUT_OF_MEMORY: "the step ran out of memory",
    STEP_ERROR: "the step raised an unexpected error",
    STEP_CRASHED: "the step process ended without reporting",
    STEP_PROTOCOL: "the step process broke its protocol with the worker",
    RUNTIME_FAILED: "the party's runtime could not start the step",
    TIMED_OUT: "the step ran past its time limit",
    STOPPED: "the step was stopped",
    WORKER_LOST: "the worker running the step stopped answering",
    STEP_FAILED: "the step failed",
}
CODES: Final = frozenset(_SENTENCES) | {FLOOR_PREFIX + name for name in FLOOR_NAMES}


def floor_code(floor: str) -> str:
    code = FLOOR_PREFIX + floor
    if code not in CODES:
        raise ValueError(f"unknown floor {floor!r}")
    return code


def known(code: object) -> str:
    """``code`` if it is one of :data:`CODES`, else :data:`STEP_FAILED`."""
    return code if isinstance(code, str) and code in CODES else STEP_FAILED


def public_reason(code: object) -> str:
    """What the other parties are told of a failure with ``code``: the code and its sentence."""
    code = known(code)
    if code.startswith(FLOOR_PREFIX):
        floor = code.removeprefix(FLOOR_PREFIX)
        return f"{code}: refused by the party's security floor {floor}"
    return f"{code}: {_SENTENCES[code]}"
