"""Poison messages on SQLite and PostgreSQL: what another party might send that once stopped the
flow_server's consumer for good is now either answered (a rejection naming the problem) or
raises an error the consumer's guard sets aside (never one it would retry forever), and the
party carries on with the next legitimate message."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import PIPELINE, Databases, LocalParty, job_yaml

from fedcore.envelope import Envelope
from flow_server.events import is_transient, reason
from flow_server.models import JobState

GUEST, HOST = "10000", "20000"


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    both = {
        GUEST: LocalParty(GUEST, {HOST}, databases.new("a"), tmp_path / "out-a", granted=tmp_path),
        HOST: LocalParty(HOST, {GUEST}, databases.new("b"), tmp_path / "out-b", granted=tmp_path),
    }
    yield both
    for party in both.values():
        party.close()


def _proposal(parties: dict[str, LocalParty], tmp_path: Path) -> Envelope:
    guest, host = tmp_path / "g.csv", tmp_path / "h.csv"
    guest.write_text("id,y\n1,0\n")
    host.write_text("id,x\n1,0.5\n")
    parties[GUEST].submit(PIPELINE, job_yaml(guest, host, tmp_path))
    return next(e for _, e in parties[GUEST].drain() if e.type == "job.propose")


def _with_body(env: Envelope, **change: Any) -> Envelope:
    return env.model_copy(update={"id": uuid.uuid4().hex, "body": {**env.body, **change}})


def _deep_pipeline(depth: int) -> str:
    return PIPELINE.replace("max-iter: 5", "max-iter: " + "[" * depth + "1" + "]" * depth)


ALIAS_BOMB = (
    PIPELINE
    + "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + "".join(f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 7))
)


@pytest.mark.parametrize(
    ("pipeline", "needle"),
    [
        (_deep_pipeline(1200), "nested deeper than"),  # was a RecursionError
        (ALIAS_BOMB, "anchors and aliases"),  # 1 MB of references from 600 bytes
        (PIPELINE + "# " + "x" * 300_000 + "\n", "larger than"),
        (PIPELINE.replace("max-iter: 5", "max-iter: !!binary aGk="), "bytes"),
        (PIPELINE.replace("max-iter: 5", "max-iter: .nan"), "NaN"),
        (PIPELINE.replace("max-iter: 5", "max-iter: " + "9" * 5000), "out of range"),
    ],
)
def test_a_hostile_pipeline_is_rejected_naming_the_problem(
    parties: dict[str, LocalParty], tmp_path: Path, pipeline: str, needle: str
) -> None:
    propose = _proposal(parties, tmp_path)
    host = parties[HOST]
    body = {**propose.body, "pipeline": pipeline[: 256 * 1024]}
    if needle == "larger than":
        # the model refuses a body this large before YAML is read at all
        body["pipeline"] = pipeline
        with pytest.raises(Exception) as caught:
            host.apply(propose.model_copy(update={"body": body}))
        assert not is_transient(caught.value) and "pipeline" in reason(caught.value)
        return
    host.apply(propose.model_copy(update={"body": body}))
    reject = [e for _, e in host.drain() if e.type == "job.reject"]
    assert len(reject) == 1 and needle in reject[0].body["reason"], reject
    assert host.job(propose.job_id).state == JobState.REJECTED


def _poison(propose: Envelope, case: str) -> tuple[str, Envelope]:
    """(the party it is sent to, a message that party cannot apply)."""
    job = propose.job_id
    if case == "bytes in common_args":
        return HOST, _with_body(propose, common_args={"max-iter": b"\x00\x01"})
    if case == "NaN in party_args":
        return HOST, _with_body(propose, party_args={"input": float("nan")})
    if case == "attempt 2**70":
        body = {"party": HOST, "state": "running", "attempt": 2**70}
        return GUEST, Envelope(
            type="task.status", job_id=job, task="intersect", src=HOST, body=body
        )
    if case == "rerun attempt 2**70":
        body = {"attempts": {"train": 2**70}}
        return GUEST, Envelope(type="job.rerun", job_id=job, src=HOST, dst=GUEST, body=body)
    if case == "task.status about another party":
        body = {"party": GUEST, "state": "failed", "reason": "forged", "attempt": 1}
        return GUEST, Envelope(
            type="task.status", job_id=job, task="intersect", src=HOST, body=body
        )
    if case == "job.stop from a stranger":
        return GUEST, Envelope(type="job.stop", job_id=job, src="30000", dst=GUEST, body={})
    if case == "job.start from a member that did not propose":
        return GUEST, Envelope(type="job.start", job_id=job, src=HOST, dst=GUEST)
    if case == "job.accept to a party that did not propose":
        propose_back = Envelope(type="job.accept", job_id=job, src=GUEST, dst=HOST)
        return HOST, propose_back
    if case == "job.propose naming another initiator":
        return HOST, _with_body(propose, initiator="30000")
    if case == "job.status claiming this party sent it":
        return GUEST, Envelope(type="job.stop", job_id=job, src=GUEST, dst=GUEST, body={})
    raise AssertionError(case)


CASES = [
    "bytes in common_args",
    "NaN in party_args",
    "attempt 2**70",
    "rerun attempt 2**70",
    "task.status about another party",
    "job.stop from a stranger",
    "job.start from a member that did not propose",
    "job.accept to a party that did not propose",
    "job.propose naming another initiator",
    "job.status claiming this party sent it",
]


@pytest.mark.parametrize("case", CASES)
def test_a_message_that_cannot_be_applied_is_set_aside_and_the_job_goes_on(
    parties: dict[str, LocalParty], tmp_path: Path, case: str
) -> None:
    propose = _proposal(parties, tmp_path)
    to, poison = _poison(propose, case)
    if to == GUEST or case.startswith("job.accept"):  # the poison comes mid-protocol
        parties[HOST].apply(propose)
    with pytest.raises(Exception) as caught:
        parties[to].apply(poison)
    assert not is_transient(caught.value)
    why = reason(caught.value)
    assert "\x00" not in why and len(why) < 1000
    # nothing of it was written, and the legitimate exchange still runs to the end
    parties[HOST].apply(propose)  # (skipped as a duplicate if it was applied before)
    accept = next(e for _, e in parties[HOST].drain() if e.type == "job.accept")
    parties[GUEST].apply(accept)
    assert parties[GUEST].job(propose.job_id).state == JobState.RUNNING
    assert all(m.answer == "accepted" for m in parties[GUEST].job(propose.job_id).members)


def test_ids_over_the_columns_never_reach_the_database(
    parties: dict[str, LocalParty], databases: Databases
) -> None:
    """A job id over 32 or a message id over 64 characters was a DataError on PostgreSQL, raised
    on every redelivery. Such an envelope no longer decodes; and should one be applied anyway,
    the database's refusal is an error the guard sets aside, described without its values."""
    wire = {
        "id": "b" * 70,
        "type": "job.stop",
        "job_id": "a" * 40,
        "src": HOST,
        "dst": GUEST,
        "ts": 1.0,
        "body": {},
    }
    forged = Envelope.model_construct(**wire)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="id"):
        Envelope.from_bytes(forged.to_bytes())
    try:
        parties[GUEST].apply(forged)
    except Exception as exc:
        assert databases.backend == "postgresql", exc  # SQLite does not enforce lengths
        assert not is_transient(exc)
        assert "b" * 70 not in reason(exc)
