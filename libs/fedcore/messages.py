"""The body of every envelope type as one bounded model, and the formats of the ids they carry.

Whatever another party sends (and whatever a step process hands its worker) is parsed here
before any handler sees it: ``parse_body(env)`` picks the model by ``env.type`` and validates
``env.body``; a handler then reads only the model. Every model is strict (no bytes where text
is expected, no ``"1"`` for ``1``, no ``True`` for an int) and refuses unknown keys, so a
misspelt or smuggled field fails loudly; every string, list, mapping and number has a bound,
and free-form values (job args, metric values) are walked with a bound on their depth, their
size and what they may hold. A body that does not fit raises ``pydantic.ValidationError`` and
nothing else, whatever its content; the consumer's guard sets the envelope aside with that
reason.

A message evolves by adding a defaulted field here, on every party alike.

Ids: job ids and message ids are 32 lowercase hex digits (``uuid4().hex`` for new ones, a uuid5
derived from the causing event for envelopes an event produces); party ids are digits; step
names are those the pipeline DSL allows. :class:`fedcore.envelope.Envelope` holds its routing
fields to these formats, so a record that breaks them never gets past decoding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

if TYPE_CHECKING:
    from fedcore.envelope import Envelope

__all__ = [
    "BODIES",
    "Body",
    "Command",
    "Empty",
    "Fed",
    "JobId",
    "JobPropose",
    "JobReject",
    "JobRerun",
    "JobStatus",
    "Log",
    "MessageId",
    "Metric",
    "PartyId",
    "StepName",
    "TaskRun",
    "TaskStatus",
    "UnknownType",
    "WorkerHeartbeat",
    "describe",
    "parse_body",
]

# --- bounds ------------------------------------------------------------------------------------

MAX_TEXT: Final = 4096  # a reason, a path, a log line's worth of words
MAX_NAME: Final = 128  # a pipeline, metric, argument or output name
MAX_PIPELINE_CHARS: Final = 256 * 1024  # a pipeline.yaml or job.yaml document
MAX_PARTIES: Final = 64
MAX_STEPS: Final = 256
MAX_ATTEMPT: Final = 1000
MAX_RUNNING: Final = 1024  # steps one worker lists in a heartbeat
MAX_ENTRIES: Final = 256  # outputs, inputs, component versions
MAX_LOG_LINE: Final = 16 * 1024
# free-form values: nesting below the mapping that holds them, total items, one string
MAX_VALUE_DEPTH: Final = 8
MAX_ARG_ITEMS: Final = 10_000
MAX_METRIC_ITEMS: Final = 200_000
MAX_VALUE_TEXT: Final = 16 * 1024
MAX_INT: Final = 2**63 - 1

# --- ids -----------------------------------------------------------------------------------------

HEX_ID = re.compile(r"^[0-9a-f]{32}$")
PARTY_ID = re.compile(r"^[0-9]{1,18}$")
STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_TYPE = r"^[a-z][a-z0-9_.-]{0,63}$"
_CODE = r"^[a-z][a-z0-9_.-]{0,63}$"

MessageId = Annotated[str, StringConstraints(strict=True, pattern=HEX_ID.pattern)]
JobId = Annotated[str, StringConstraints(strict=True, pattern=HEX_ID.pattern)]
PartyId = Annotated[str, StringConstraints(strict=True, pattern=PARTY_ID.pattern)]
StepName = Annotated[str, StringConstraints(strict=True, pattern=STEP_NAME.pattern)]
MessageType = Annotated[str, StringConstraints(strict=True, pattern=_TYPE)]


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL, and no legitimate message needs one
    if "\x00" in text:
        raise ValueError("text must not contain NUL characters")
    return text


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_nul)]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_no_nul)]
Attempt = Annotated[int, Field(ge=1, le=MAX_ATTEMPT)]
TaskStateName = Literal["waiting", "running", "success", "failed", "canceled", "timeout"]
JobStateName = Literal[
    "pending_approval",
    "waiting",
    "running",
    "paused",
    "success",
    "failed",
    "canceled",
    "timeout",
    "rejected",
]
Role = Literal["guest", "host", "arbiter"]
PartySpec = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,18}=[a-z_]{1,32}$")]


# --- free-form values (job args, metric values) --------------------------------------------------


def _walk(value: object, *, max_items: int, finite: bool) -> None:
    """Check a JSON-like value without recursion: only None, bool, int (64-bit), float, str,
    list and str-keyed dict, at most ``MAX_VALUE_DEPTH`` deep and ``max_items`` items in all."""
    pending: list[tuple[object, int]] = [(value, 0)]
    items = 0
    while pending:
        item, depth = pending.pop()
        items += 1
        if items > max_items:
            raise ValueError(f"holds more than {max_items} items")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -MAX_INT - 1 <= item <= MAX_INT:
                raise ValueError("holds an integer beyond 64 bits")
        elif isinstance(item, float):
            if finite and not math.isfinite(item):
                raise ValueError("holds a NaN or infinite number")
        elif isinstance(item, str):
            if len(item) > MAX_VALUE_TEXT:
                raise ValueError(f"holds a string longer than {MAX_VALUE_TEXT} characters")
            _no_nul(item)
        elif isinstance(item, list | tuple | dict):
            if depth >= MAX_VALUE_DEPTH:
                raise ValueError(f"is nested deeper than {MAX_VALUE_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str) or len(key) > MAX_NAME:
                        raise ValueError(f"has a key that is not a string of <= {MAX_NAME} chars")
                    _no_nul(key)
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)
        else:
            raise ValueError(f"holds a {type(item).__name__}, which is not a JSON value")


def _bounded(*, max_items: int, finite: bool) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        _walk(value, max_items=max_items, finite=finite)
        return value

    return check


# a job's arguments (common, one party's own, a step's as it runs): finite numbers only, since
# they are stored as JSON (PostgreSQL refuses NaN)
Args = Annotated[dict[str, Any], AfterValidator(_bounded(max_items=MAX_ARG_ITEMS, finite=True))]
MetricValue = Annotated[Any, AfterValidator(_bounded(max_items=MAX_METRIC_ITEMS, finite=False))]


# --- bodies --------------------------------------------------------------------------------------


class Body(BaseModel):
    """A message body: strict, unknown keys refused, frozen."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @classmethod
    def of(cls, env: Envelope) -> Self:
        """``env``'s body as this model (``pydantic.ValidationError`` if it does not fit)."""
        return cls.model_validate(env.body)


class Empty(Body):
    """``job.accept``, ``job.start``, ``job.delete``: nothing but the envelope."""


class JobPropose(Body):
    """``job.propose``: the initiator proposes a job (only the receiver's own party args).

    Unknown keys are ignored here alone: a proposal from another release must still be read far
    enough to be rejected with its ``tessera_version``, not set aside as malformed.
    """

    model_config = ConfigDict(extra="ignore")

    pipeline: Annotated[str, Field(min_length=1, max_length=MAX_PIPELINE_CHARS)]
    pipeline_name: Annotated[str, Field(max_length=200), AfterValidator(_no_nul)]
    parties: Annotated[list[PartySpec], Field(min_length=1, max_length=MAX_PARTIES)]
    common_args: Args = Field(default_factory=dict)
    party_args: Args = Field(default_factory=dict)
    initiator: PartyId
    # absent from a release too old to say: the receiver rejects it naming the reason
    tessera_version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.+-]{1,32}$")] | None = (
        None
    )
    component_versions: Annotated[
        dict[Name, Annotated[str, Field(max_length=32)]], Field(max_length=MAX_ENTRIES)
    ] = Field(default_factory=dict)


class JobReject(Body):
    """``job.reject``: why the proposed-to party refuses."""

    reason: Text | None = None


class TaskStatus(Body):
    """``task.status``: a task's state, from a worker (with its outputs) or a peer (without)."""

    party: PartyId | None = None
    state: TaskStateName
    reason: Text | None = None
    # a failure's error code (fedcore.failures); an unknown one reads as "step_failed"
    code: Annotated[str, StringConstraints(strict=True, pattern=_CODE)] | None = None
    attempt: Attempt | None = None
    outputs: Annotated[dict[Name, Text], Field(max_length=MAX_ENTRIES)] = Field(
        default_factory=dict
    )
    # a failure the platform caused (lost worker, evicted pod, lost node), from this party's
    # own worker or flow_server: retried apart from auto-retries (flow_server.protocol.faults)
    fault: Literal["platform"] | None = None


class JobStatus(Body):
    """``job.status``: a party's job state (to peers: ``state``, ``reason``); the announcement
    for the dashboard on fl.status adds the job's parties and its pipeline's DAG."""

    state: JobStateName
    reason: Text | None = None
    initiator: PartyId | None = None
    parties: Annotated[list[PartySpec], Field(max_length=MAX_PARTIES)] | None = None
    pipeline: Annotated[str, Field(max_length=200), AfterValidator(_no_nul)] | None = None
    steps: Annotated[list[StepName], Field(max_length=MAX_STEPS)] | None = None
    components: Annotated[dict[StepName, Name], Field(max_length=MAX_STEPS)] | None = None
    depends: (
        Annotated[
            dict[StepName, Annotated[list[StepName], Field(max_length=MAX_STEPS)]],
            Field(max_length=MAX_STEPS),
        ]
        | None
    ) = None


class Command(Body):
    """``job.stop`` / ``job.pause`` / ``job.resume``: to peers, and to workers on fl.control
    (where ``attempt`` with the envelope's ``task`` limits a stop to that step's copies)."""

    reason: Text | None = None
    attempt: Attempt | None = None


class JobRerun(Body):
    """``job.rerun``: the steps to run again, with their new attempts."""

    attempts: Annotated[dict[StepName, Attempt], Field(min_length=1, max_length=MAX_STEPS)]
    # "platform": the sender restarts a step after a platform fault of its own; the job runs on
    # and every party keeps its retry counts (flow_server.protocol.faults)
    fault: Literal["platform"] | None = None


class TaskRun(Body):
    """``task.run``: the flow_server asks its task_engine to run one step."""

    component: Name
    role: Role
    party_id: PartyId
    parties: Annotated[
        dict[Role, Annotated[list[PartyId], Field(min_length=1, max_length=MAX_PARTIES)]],
        Field(min_length=1),
    ]
    args: Args = Field(default_factory=dict)
    inputs: Annotated[dict[Name, Text], Field(max_length=MAX_ENTRIES)] = Field(default_factory=dict)
    output_dir: Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_no_nul)]
    fed_since_ms: Annotated[int, Field(ge=0, le=MAX_INT)]
    attempt: Attempt


class RunningStep(Body):
    """One entry of a heartbeat's ``running`` list."""

    job_id: JobId
    task: StepName
    attempt: Attempt


class WorkerHeartbeat(Body):
    """``worker.heartbeat``: a worker is alive and runs these steps now."""

    party: PartyId
    worker: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
    interval_s: Annotated[float, Field(gt=0, le=86_400, allow_inf_nan=False)]
    running: Annotated[list[RunningStep], Field(max_length=MAX_RUNNING)]


class Metric(Body):
    """``metric``: a step reported a number or a JSON-like structure (a curve, a table)."""

    party: PartyId
    name: Name
    value: MetricValue
    step: Annotated[int, Field(ge=0, le=MAX_INT)] | None = None


class Log(Body):
    """``log``: one line a step logged."""

    party: PartyId
    level: Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{1,16}$")]
    line: Annotated[str, Field(max_length=MAX_LOG_LINE), AfterValidator(_no_nul)]


class Fed(Body):
    """``fed``: one value a step sent a peer's step. The value is whatever the safe codec
    decoded (numbers, text, numpy arrays...); its size is bounded by the record it came in."""

    tag: Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_no_nul)]
    attempt: Attempt
    value: Any = None


BODIES: Final[dict[str, type[Body]]] = {
    "job.propose": JobPropose,
    "job.accept": Empty,
    "job.reject": JobReject,
    "job.start": Empty,
    "task.status": TaskStatus,
    "job.status": JobStatus,
    "job.stop": Command,
    "job.pause": Command,
    "job.resume": Command,
    "job.rerun": JobRerun,
    "job.delete": Empty,
    "task.run": TaskRun,
    "worker.heartbeat": WorkerHeartbeat,
    "metric": Metric,
    "log": Log,
    "fed": Fed,
}


class UnknownType(ValueError):
    """An envelope type no model exists for."""


def parse_body(env: Envelope) -> Body:
    """``env.body`` as the model of ``env.type``: ``pydantic.ValidationError`` if it does not
    fit, :class:`UnknownType` if no model exists for the type."""
    model = BODIES.get(env.type)
    if model is None:
        raise UnknownType(f"no message type {env.type!r}")
    return model.of(env)


def describe(exc: ValidationError, *, limit: int = 3) -> str:
    """What is wrong with a message, where, without echoing the received values (a reason may
    be logged, dead-lettered or sent back to a party; the values are the sender's)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}" for err in errors[:limit]
    ]
    more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
    return f"{exc.title}: " + "; ".join(parts) + more
