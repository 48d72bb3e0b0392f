"""Property-based fuzzing (hypothesis) of the bodies a worker consumes: ``task.run``,
``fl.control`` commands and ``fed`` messages. Whatever the body, the worker's handling either
applies it or raises the one error its guard turns into a failed task and a dead letter
(:class:`TaskError`, :class:`ControlError`, :class:`FedRefused`); nothing else escapes, and the
failed status the guard publishes can always be built.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedcore.envelope import Envelope
from fedcore.settings import PartySettings
from task_engine.execution import FedRefused, Task, TaskError, checked_fed
from task_engine.worker import ControlError, Worker, _rejected

PARTY, PEER = "10000", "20000"
JOB = "ab" * 16
ROOT = Path("/tmp/tessera-fuzz-root")
SETTINGS = PartySettings(
    party_id=PARTY, kafka_bootstrap="127.0.0.1:1", state_dir=ROOT / "state", data_roots=[ROOT]
)

# anything the safe codec can decode: plain values, bytes, big integers, nested containers
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.binary(max_size=10)
    | st.sampled_from(["", "..", "/etc/passwd", f"{ROOT}/../etc", "a\0b", "guest", PARTY]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

VALID_RUN: dict[str, Any] = {
    "component": "intersect",
    "role": "guest",
    "party_id": PARTY,
    "parties": {"guest": [PARTY], "host": [PEER]},
    "args": {"max-iter": 3},
    "inputs": {"data": f"{ROOT}/data/guest.csv"},
    "output_dir": f"{ROOT}/state/output/{JOB}/{PARTY}/intersect",
    "fed_since_ms": 1_700_000_000_000,
    "attempt": 1,
}
VALID_FED: dict[str, Any] = {"tag": "ping", "attempt": 1, "value": [1, 2, 3]}
VALID_COMMAND: dict[str, Any] = {"reason": "stopped by someone", "attempt": 2}


def mutated(valid: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """``valid`` with some keys replaced, dropped or added; or any map at all."""
    keys = st.sampled_from([*valid, "extra"])
    changes = st.dictionaries(keys, VALUES, max_size=4)
    dropped = st.sets(st.sampled_from(list(valid)), max_size=2)
    edited = st.tuples(changes, dropped).map(
        lambda cd: {k: v for k, v in {**valid, **cd[0]}.items() if k not in cd[1]}
    )
    return edited | st.dictionaries(st.text(max_size=8), VALUES, max_size=6)


WORKER = Worker(SETTINGS)  # never run: no step runs, so a command applies to none or is refused
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=mutated(VALID_RUN))
def test_a_task_run_body_is_a_task_or_a_task_error(body: dict[str, Any]) -> None:
    env = Envelope(type="task.run", job_id=JOB, task="intersect", src=PARTY, dst=PARTY, body=body)
    try:
        task = Task.from_envelope(env, roots=SETTINGS.roots)
    except TaskError as exc:
        assert len(str(exc)) < 2000
    else:
        assert all(Path(p).is_relative_to(ROOT) for p in [*task.inputs.values(), task.output_dir])
    status = _rejected(env, "refused", SETTINGS)  # what the guard publishes: always buildable
    assert status.body["attempt"] is None or 1 <= status.body["attempt"] <= 1000
    Envelope.from_bytes(status.to_bytes())


@FUZZ
@given(body=mutated(VALID_FED), src=st.sampled_from([PEER, PARTY, "30000"]))
def test_a_fed_body_is_handed_on_or_refused(body: dict[str, Any], src: str) -> None:
    env = Envelope(type="fed", job_id=JOB, task="intersect", src=src, dst=PARTY, body=body)
    task = Task.from_envelope(
        Envelope(type="task.run", job_id=JOB, task="intersect", src=PARTY, body=VALID_RUN),
        roots=SETTINGS.roots,
    )
    try:
        fed = checked_fed(env, task)
    except FedRefused:
        return
    assert src == PEER and isinstance(fed.tag, str)


@FUZZ
@given(
    body=mutated(VALID_COMMAND),
    kind=st.sampled_from(["job.stop", "job.pause", "job.resume", "job.start", "task.run"]),
    task=st.none() | st.just("intersect"),
)
def test_a_control_command_is_applied_or_a_control_error(
    body: dict[str, Any], kind: str, task: str | None
) -> None:
    env = Envelope(type=kind, job_id=JOB, task=task, src=PARTY, dst=PARTY, body=body)
    try:
        asyncio.run(WORKER.on_control(env))
    except ControlError as exc:
        assert len(str(exc)) < 2000
