"""The bounded message models: what every service produces fits them, what a hostile party might
send does not, and no body whatever makes them raise anything but ValidationError."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from fedcore import codec, messages
from fedcore.envelope import Envelope, new_id
from fedcore.messages import (
    BODIES,
    MAX_ATTEMPT,
    MAX_VALUE_DEPTH,
    JobPropose,
    JobRerun,
    Metric,
    TaskRun,
    TaskStatus,
    UnknownType,
    describe,
    parse_body,
)

JOB = uuid.uuid4().hex


def env(kind: str, body: dict[str, Any], **fields: Any) -> Envelope:
    return Envelope(type=kind, job_id=JOB, src="20000", dst="10000", body=body, **fields)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# what the services send today, one per type (kept in step with their producers)
VALID: dict[str, dict[str, Any]] = {
    "job.propose": {
        "pipeline": "name: p\nsteps: []\n",
        "pipeline_name": "p",
        "parties": ["10000=guest", "20000=host"],
        "common_args": {"auto-retries": 1, "learning-rate": 0.15, "cols": ["a", "b"]},
        "party_args": {"input": "/data/host.csv"},
        "initiator": "10000",
        "tessera_version": "0.1.0",
        "component_versions": {"intersect": "1"},
    },
    "job.accept": {},
    "job.reject": {"reason": "no data"},
    "job.start": {},
    "task.status": {
        "party": "10000",
        "state": "failed",
        "reason": "DataError: no column 'y' in /out/x.csv",
        "code": "bad_data",
        "outputs": {},
        "attempt": 1,
    },
    "job.status": {
        "state": "running",
        "initiator": "10000",
        "parties": ["10000=guest"],
        "pipeline": "p",
        "steps": ["a", "b"],
        "components": {"a": "intersect", "b": "scale"},
        "depends": {"a": [], "b": ["a"]},
        "reason": None,
    },
    "job.stop": {"reason": "stopped on party 10000", "attempt": 2},
    "job.pause": {},
    "job.resume": {},
    "job.rerun": {"attempts": {"train": 2}},
    "job.delete": {},
    "task.run": {
        "component": "hetero_lr",
        "role": "guest",
        "party_id": "10000",
        "parties": {"guest": ["10000"], "host": ["20000"]},
        "args": {"key-bits": 1024},
        "inputs": {"data": "/o/x.csv"},
        "output_dir": "/o/job/10000/train",
        "fed_since_ms": 1_700_000_000_000,
        "attempt": 1,
    },
    "worker.heartbeat": {
        "party": "10000",
        "worker": "host:12:1700000000000",
        "interval_s": 5.0,
        "running": [{"job_id": JOB, "task": "train", "attempt": 1}],
    },
    "metric": {"party": "10000", "name": "roc", "value": [[0.0, 0.1], [1.0, 1.0]], "step": None},
    "log": {"party": "10000", "level": "INFO", "line": "epoch 1"},
    "fed": {"tag": "enc_residual", "attempt": 1, "value": np.arange(4)},
}


def test_platform_faults_fit() -> None:
    lost = {"party": "20000", "state": "failed", "reason": "worker lost", "attempt": 1}
    assert parse_body(env("task.status", {**lost, "fault": "platform"})) == TaskStatus(
        party="20000", state="failed", reason="worker lost", attempt=1, fault="platform"
    )
    rerun = parse_body(env("job.rerun", {"attempts": {"train": 2}, "fault": "platform"}))
    assert rerun == JobRerun(attempts={"train": 2}, fault="platform")


def test_every_type_has_a_model_and_an_example() -> None:
    assert set(VALID) == set(BODIES)


@pytest.mark.parametrize("kind", sorted(VALID))
def test_what_the_services_send_fits(kind: str) -> None:
    parsed = parse_body(env(kind, VALID[kind]))
    assert isinstance(parsed, BODIES[kind])
    # and it still fits once it crossed the wire
    again = Envelope.from_bytes(env(kind, VALID[kind]).to_bytes())
    assert isinstance(parse_body(again), BODIES[kind])


@pytest.mark.parametrize(
    ("model", "body", "where"),
    [
        (TaskStatus, {"state": "running", "attempt": 2**70}, "attempt"),
        (TaskStatus, {"state": "running", "attempt": 0}, "attempt"),
        (TaskStatus, {"state": "running", "attempt": MAX_ATTEMPT + 1}, "attempt"),
        (TaskStatus, {"state": "running", "attempt": True}, "attempt"),
        (TaskStatus, {"state": "running", "attempt": "1"}, "attempt"),
        (TaskStatus, {"state": b"running"}, "state"),
        (TaskStatus, {"state": "exploded"}, "state"),
        (TaskStatus, {"state": "failed", "reason": "x" * 5000}, "reason"),
        (TaskStatus, {"state": "failed", "reason": "a\x00b"}, "reason"),
        (TaskStatus, {"state": "failed", "party": "../x"}, "party"),
        (TaskStatus, {"state": "failed", "smuggled": 1}, "smuggled"),
        (TaskStatus, {"state": "failed", "fault": "step"}, "fault"),
        (JobRerun, {"attempts": {"train": 2}, "fault": "user"}, "fault"),
        (JobPropose, {**VALID["job.propose"], "tessera_version": "1.0\n"}, "tessera_version"),
        (JobPropose, {**VALID["job.propose"], "common_args": {"x": b"\x00"}}, "common_args"),
        (JobPropose, {**VALID["job.propose"], "common_args": {"x": nested(50)}}, "common_args"),
        (JobPropose, {**VALID["job.propose"], "party_args": {"x": 2**70}}, "party_args"),
        (JobPropose, {**VALID["job.propose"], "party_args": {"x": float("nan")}}, "party_args"),
        (JobPropose, {**VALID["job.propose"], "party_args": {"x": [0] * 20_000}}, "party_args"),
        (JobPropose, {**VALID["job.propose"], "pipeline": "x" * 300_000}, "pipeline"),
        (JobPropose, {**VALID["job.propose"], "parties": ["../../x=guest"]}, "parties"),
        (JobPropose, {**VALID["job.propose"], "initiator": "1" * 40}, "initiator"),
        (JobRerun, {"attempts": {"../etc": 2}}, "attempts"),
        (JobRerun, {"attempts": {"train": 0}}, "attempts"),
        (JobRerun, {"attempts": {}}, "attempts"),
        (TaskRun, {**VALID["task.run"], "output_dir": "/o/\x00"}, "output_dir"),
        (TaskRun, {**VALID["task.run"], "role": "king"}, "role"),
        (Metric, {**VALID["metric"], "value": {"k": b"raw"}}, "value"),
    ],
)
def test_hostile_bodies_are_refused_saying_where(
    model: type[messages.Body], body: dict[str, Any], where: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(body)
    reason = describe(caught.value)
    assert where in reason
    assert len(reason) < 1000


def test_values_may_nest_up_to_the_bound() -> None:
    ok = {**VALID["job.propose"], "common_args": {"x": nested(MAX_VALUE_DEPTH - 1)}}
    JobPropose.model_validate(ok)
    with pytest.raises(ValidationError):
        JobPropose.model_validate({**ok, "common_args": {"x": nested(MAX_VALUE_DEPTH + 1)}})


def test_metric_values_may_be_infinite_but_args_may_not() -> None:
    Metric.model_validate({**VALID["metric"], "value": float("inf")})


def test_describe_does_not_echo_the_value() -> None:
    secret = "patient-4711-diagnosis"
    with pytest.raises(ValidationError) as caught:
        TaskStatus.model_validate({"state": secret})
    assert secret not in describe(caught.value)


def test_unknown_type() -> None:
    with pytest.raises(UnknownType):
        parse_body(env("job.explode", {}))


@pytest.mark.parametrize(
    "fields",
    [
        {"job_id": "j1"},
        {"job_id": "a" * 33},
        {"job_id": "A" * 32},
        {"job_id": "/" + "a" * 31},
        {"id": "x" * 65},
        {"id": "a" * 31},
        {"src": "ten"},
        {"src": "1" * 19},
        {"dst": "../1"},
        {"task": "../../etc"},
        {"task": "a" * 65},
        {"type": "X" * 100},
        {"ts": float("nan")},
    ],
)
def test_envelope_ids_keep_their_formats(fields: dict[str, Any]) -> None:
    raw = {"id": new_id(), "type": "job.stop", "job_id": JOB, "src": "1", "ts": 1.0, "body": {}}
    with pytest.raises(ValidationError):
        Envelope.from_bytes(codec.packb({**raw, **fields}))


def test_envelope_refuses_bytes_for_text() -> None:
    raw = {"id": new_id(), "type": "job.stop", "job_id": JOB.encode(), "src": "1", "body": {}}
    with pytest.raises(ValidationError):
        Envelope.from_bytes(codec.packb(raw))


def test_a_heartbeat_is_about_no_job() -> None:
    assert Envelope(type="worker.heartbeat", job_id="", src="1").job_id == ""


# --- property: any body at all gives a model or a ValidationError --------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.binary(max_size=20)
    | st.sampled_from(["running", "success", "10000", "10000=guest", JOB, "train", "1.0"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _bodies(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies near the valid one (each key kept, dropped or replaced) and arbitrary ones."""
    valid = VALID[kind]
    keys = sorted(valid)
    mutated = st.fixed_dictionaries(
        {},
        optional={k: st.one_of(st.just(valid[k]), _values) for k in keys},
    )
    extra = st.dictionaries(st.text(max_size=12), _values, max_size=4)
    return st.one_of(mutated, st.builds(lambda a, b: {**a, **b}, mutated, extra))


@pytest.mark.parametrize("kind", sorted(VALID))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_body_parses_or_raises_validation_error(kind: str, data: st.DataObject) -> None:
    body = data.draw(_bodies(kind))
    try:
        parsed = parse_body(env(kind, body))
    except ValidationError as exc:
        assert len(describe(exc)) < 2000
        return
    assert isinstance(parsed, BODIES[kind])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.dictionaries(st.text(max_size=8), _values, max_size=10))
def test_any_map_is_an_envelope_or_a_validation_error(raw: dict[str, Any]) -> None:
    try:
        Envelope.from_bytes(codec.packb(raw))
    except ValidationError:
        pass
