"""Which steps of a job this party may start now, and whether the job as a whole has ended.

Pure functions over the pipeline, the job's parties and the task states this party knows (its own
and those the other parties forwarded). A step takes part on every party whose role is among its
component's roles; it is *done* when it succeeded on each of them. A party dispatches only the
steps its role takes part in, once, when all their dependencies are done.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flow_server.dsl import ArgRef, Pipeline, Step, takes_part

SUCCESS = "success"
FAILED = "failed"
RUNNING = "running"
CANCELED = "canceled"
TIMEOUT = "timeout"
# a task ending in one of these ends the job in the same state
_ENDING = {FAILED: "failed", TIMEOUT: "timed out", CANCELED: "was canceled"}


@dataclass(frozen=True)
class TaskView:
    state: str
    reason: str | None = None
    outputs: Mapping[str, str] = field(default_factory=dict)


# (step name, party id) -> what this party knows of that task
Tasks = Mapping[tuple[str, str], TaskView]


@dataclass(frozen=True)
class Outcome:
    state: str  # running, success, failed, timeout or canceled
    reason: str | None = None


def participants(step: Step, parties: Mapping[str, str]) -> list[str]:
    """The parties (id → role) that run ``step``."""
    return [p for p, role in parties.items() if takes_part(step, role)]


def step_done(step: Step, parties: Mapping[str, str], tasks: Tasks) -> bool:
    return all(
        (t := tasks.get((step.name, p))) is not None and t.state == SUCCESS
        for p in participants(step, parties)
    )


def ready_steps(
    pipeline: Pipeline, parties: Mapping[str, str], me: str, tasks: Tasks
) -> list[Step]:
    """Steps party ``me`` takes part in, has not dispatched yet, whose dependencies are done."""
    role = parties[me]
    return [
        step
        for step in pipeline.steps
        if takes_part(step, role)
        and (step.name, me) not in tasks
        and all(step_done(pipeline.step(dep), parties, tasks) for dep in step.deps)
    ]


def job_outcome(pipeline: Pipeline, parties: Mapping[str, str], tasks: Tasks) -> Outcome:
    """Failed (timeout, canceled) as soon as any task failed (timed out, was canceled) anywhere;
    success when every step is done."""
    for step in pipeline.steps:
        for party in participants(step, parties):
            task = tasks.get((step.name, party))
            if task is not None and task.state in _ENDING:
                why = f": {task.reason}" if task.reason else ""
                how = _ENDING[task.state]
                return Outcome(task.state, f"step '{step.name}' {how} on party {party}{why}")
    if all(step_done(step, parties, tasks) for step in pipeline.steps):
        return Outcome(SUCCESS)
    return Outcome(RUNNING)


def downstream(pipeline: Pipeline, names: set[str]) -> set[str]:
    """``names`` and every step that depends on one of them, directly or not."""
    out = set(names)
    for step in pipeline.steps:  # in order: a step comes after its dependencies
        if out.intersection(step.deps):
            out.add(step.name)
    return out


class UnresolvedInput(LookupError):
    """A step's input cannot be given a path on this party."""


def resolve_inputs(
    step: Step, args: Mapping[str, object], me: str, parties: Mapping[str, str], tasks: Tasks
) -> dict[str, str]:
    """``$arg`` → this party's argument; ``step.output`` → that step's local output path.

    An output of a step this party does not take part in is not available here and is left out
    (the dependency still orders the steps).
    """
    inputs: dict[str, str] = {}
    for name, ref in step.inputs.items():
        if isinstance(ref, ArgRef):
            if ref.arg not in args:
                raise UnresolvedInput(
                    f"step '{step.name}': no argument '{ref.arg}' for input {name}"
                )
            inputs[name] = str(args[ref.arg])
            continue
        source = tasks.get((ref.step, me))
        if source is None:
            continue  # not run on this party
        if ref.output not in source.outputs:
            raise UnresolvedInput(
                f"step '{step.name}': step '{ref.step}' reported no output '{ref.output}'"
            )
        inputs[name] = source.outputs[ref.output]
    return inputs
