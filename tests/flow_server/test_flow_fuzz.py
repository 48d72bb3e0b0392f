"""Property-based fuzzing of every envelope type the flow_server consumes, through
``protocol.apply`` on a real database session: whatever the body, the sender or the job, an
envelope is applied, skipped, or refused with one of the errors the consumer's guard sets aside
(never a transient one it would retry forever, never a bug such as a KeyError), and the database
stays usable for the next legitimate message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flow_helpers import PIPELINE, Databases, LocalParty, job_yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import select

from fedcore.envelope import Envelope
from fedcore.version import TESSERA_VERSION
from flow_server.dsl import DslError
from flow_server.events import is_transient
from flow_server.models import Job
from flow_server.protocol import ProtocolError
from flow_server.protocol.dispatch import HANDLERS
from flow_server.states import IllegalTransition

GUEST, HOST = "10000", "20000"
STEPS = ["intersect", "train", "evaluate"]
# what the guard sets aside; anything else escaping a handler is a bug to fix
REFUSED = (ValidationError, ProtocolError, DslError, IllegalTransition)


@pytest.fixture(scope="module")
def world(
    module_databases: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, LocalParty], str]]:
    """Two parties with one running job between them (and its files)."""
    tmp = tmp_path_factory.mktemp("fuzz")
    parties = {
        GUEST: LocalParty(GUEST, {HOST}, module_databases.new("fa"), tmp / "out-a", granted=tmp),
        HOST: LocalParty(HOST, {GUEST}, module_databases.new("fb"), tmp / "out-b", granted=tmp),
    }
    guest, host = tmp / "g.csv", tmp / "h.csv"
    guest.write_text("id,y\n1,0\n")
    host.write_text("id,x\n1,0.5\n")
    job_id = parties[GUEST].submit(PIPELINE, job_yaml(guest, host, tmp))
    propose = next(e for _, e in parties[GUEST].drain() if e.type == "job.propose")
    parties[HOST].apply(propose)
    accept = next(e for _, e in parties[HOST].drain() if e.type == "job.accept")
    parties[GUEST].apply(accept)
    yield parties, job_id
    for party in parties.values():
        party.close()


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=10)
    | st.sampled_from([*STEPS, GUEST, HOST, "running", "failed", "success", "canceled"])
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=15,
)
_states = st.sampled_from(
    ["waiting", "running", "paused", "success", "failed", "canceled", "timeout", "rejected"]
)


def _typical(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """A body of roughly the right shape for ``kind``, its values often plausible."""
    attempt = st.integers(min_value=-2, max_value=2**70) | st.sampled_from([1, 2, 3])
    reason = st.none() | st.text(max_size=50)
    fields: dict[str, st.SearchStrategy[Any]] = {
        "job.propose": st.fixed_dictionaries(
            {
                "pipeline": st.sampled_from([PIPELINE, PIPELINE.replace("5", "[[[[1]]]]")])
                | st.text(max_size=60),
                "pipeline_name": st.text(max_size=20),
                "parties": st.lists(
                    st.sampled_from([f"{GUEST}=guest", f"{HOST}=host", "30000=host"]), max_size=3
                ),
                "common_args": st.dictionaries(st.text(max_size=10), _values, max_size=3),
                "party_args": st.dictionaries(
                    st.sampled_from(["input", "output", "x"]), _values, max_size=3
                ),
                "initiator": st.sampled_from([GUEST, HOST, "30000"]),
                "tessera_version": st.sampled_from([TESSERA_VERSION, "9.9.9"]),
                "component_versions": st.just({"intersect": "1", "hetero_lr": "1"}),
            }
        ),
        "job.reject": st.fixed_dictionaries({"reason": reason}),
        "task.status": st.fixed_dictionaries(
            {
                "party": st.sampled_from([GUEST, HOST, "30000"]),
                "state": st.sampled_from(
                    ["waiting", "running", "success", "failed", "canceled", "timeout", "x"]
                ),
                "reason": reason,
                "attempt": attempt | st.none(),
                "outputs": st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=2),
            }
        ),
        "job.status": st.fixed_dictionaries({"state": _states, "reason": reason}),
        "job.rerun": st.fixed_dictionaries(
            {"attempts": st.dictionaries(st.sampled_from([*STEPS, "x"]), attempt, max_size=3)}
        ),
    }
    command = st.fixed_dictionaries({}, optional={"reason": reason, "attempt": attempt})
    return fields.get(kind, command if kind.startswith("job.") else st.just({}))


def _bodies(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    typical = _typical(kind)
    with_extra = st.builds(
        lambda body, extra: {**body, **extra},
        typical,
        st.dictionaries(st.text(max_size=8), _values, max_size=2),
    )
    return st.one_of(typical, with_extra, st.dictionaries(st.text(max_size=8), _values))


@st.composite
def _envelopes(draw: st.DrawFn, job_id: str) -> tuple[str, Envelope]:
    kind = draw(st.sampled_from(sorted(HANDLERS)))
    to = draw(st.sampled_from([GUEST, HOST]))
    src = draw(st.sampled_from([GUEST, HOST, "30000"]))
    env = Envelope(
        id=uuid.uuid4().hex,
        type=kind,
        job_id=draw(st.sampled_from([job_id, uuid.uuid4().hex])),
        task=draw(st.none() | st.sampled_from([*STEPS, "nope"])),
        src=src,
        dst=draw(st.sampled_from([to, None])),
        body=draw(_bodies(kind)),
    )
    return to, env


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_envelope_escapes_the_guard(
    world: tuple[dict[str, LocalParty], str], data: st.DataObject
) -> None:
    parties, job_id = world
    to, env = data.draw(_envelopes(job_id))
    try:
        parties[to].apply(env)
    except REFUSED as exc:
        assert not is_transient(exc)
    # the outbox of whatever was applied is published in production; here it is dropped
    parties[to].drain()
    # and the database still answers (the job may be gone: a member may delete an ended job)
    with parties[to].sessions() as s:
        s.execute(select(Job.id, Job.state)).all()
