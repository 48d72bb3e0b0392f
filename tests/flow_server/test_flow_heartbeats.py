"""Worker heartbeats on the flow_server: the per-step timers (short timeouts, no database), and a
lost step failed in the database, retried on every party or failing the job (SQLite and
PostgreSQL, messages routed by hand as in test_flow_lifecycle)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import Databases, LocalParty
from test_flow_lifecycle import GUEST, HOST, Network, states, submit

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server.heartbeats import (
    HEARTBEAT,
    HeartbeatWatch,
    RunningStep,
    lost_reason,
    report_lost,
    running_here,
)

TIMEOUT_S = 0.3


def heartbeat(party: str, *steps: RunningStep) -> Envelope:
    return Envelope(
        type=HEARTBEAT,
        job_id="",
        src=party,
        body={
            "party": party,
            "worker": "host:1:2",
            "interval_s": 0.1,
            "running": [{"job_id": s.job_id, "task": s.step, "attempt": s.attempt} for s in steps],
        },
    )


def status(party: str, step: RunningStep, state: str) -> Envelope:
    return Envelope(
        type="task.status",
        job_id=step.job_id,
        task=step.step,
        src=party,
        body={"party": party, "state": state, "attempt": step.attempt},
    )


class Recorder:
    def __init__(self) -> None:
        self.lost: list[tuple[RunningStep, float]] = []

    async def __call__(self, step: RunningStep, silent_s: float) -> None:
        self.lost.append((step, silent_s))


async def test_a_step_heartbeats_keep_alive_is_lost_once_they_stop() -> None:
    lost = Recorder()
    watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=lost)
    step = RunningStep("1" * 32, "train", 1)
    watch.observe(status(HOST, step, "running"))
    assert watch.watched == {step}
    for _ in range(8):  # 0.8 s, well past the timeout, covered all along
        await asyncio.sleep(0.1)
        watch.observe(heartbeat(HOST, step))
    assert lost.lost == []
    await asyncio.sleep(TIMEOUT_S + 0.2)
    assert [s for s, _ in lost.lost] == [step]
    assert TIMEOUT_S <= lost.lost[0][1] < TIMEOUT_S + 0.2
    assert watch.watched == frozenset()
    await asyncio.sleep(TIMEOUT_S)
    assert len(lost.lost) == 1  # reported once
    await watch.close()


async def test_ended_steps_other_parties_and_stale_heartbeats() -> None:
    lost = Recorder()
    watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=lost)
    job = "2" * 32
    done, other, late = RunningStep(job, "a", 1), RunningStep(job, "b", 1), RunningStep(job, "c", 2)
    watch.observe(status(HOST, done, "running"))
    watch.observe(status(HOST, done, "success"))  # ended: no longer watched
    watch.observe(heartbeat(GUEST, other))  # another party's worker: not ours to watch
    watch.observe(status(GUEST, other, "running"))
    beat = heartbeat(HOST, late)
    beat.ts -= TIMEOUT_S - 0.1  # read late: it covers the step from when it was sent
    watch.observe(beat)
    assert watch.watched == {late}
    await asyncio.sleep(0.2)
    assert [s for s, _ in lost.lost] == [late]
    await watch.close()


async def test_close_cancels_every_timer() -> None:
    lost = Recorder()
    watch = HeartbeatWatch(HOST, timeout_s=0.1, lost=lost)
    watch.watch(RunningStep("2" * 32, "a", 1))
    await watch.close()
    await asyncio.sleep(0.2)
    assert lost.lost == [] and watch.watched == frozenset()


# --- a lost step in the database, on both backends ---------------------------------------------


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    both = {
        GUEST: LocalParty(GUEST, {HOST}, databases.new("a"), tmp_path / "out-a"),
        HOST: LocalParty(HOST, {GUEST}, databases.new("b"), tmp_path / "out-b"),
    }
    yield both
    for party in both.values():
        party.close()


def hold_first_train(step: str, party: str, attempt: int) -> str | None:
    """Attempt 1 of train stays running (the host's worker dies under it); the rest succeed."""
    return None if step == "train" and attempt == 1 else "success"


def lose(party: LocalParty, step: RunningStep, silent_s: float = 15.0) -> bool:
    with party.sessions.begin() as session:
        return report_lost(session, party.ctx, step, silent_s)


async def test_a_lost_step_is_retried_on_every_party_and_the_job_succeeds(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path, "auto-retries: 1")
    net = Network(parties, hold_first_train)
    net.run()
    train = RunningStep(job_id, "train", 1)
    host = parties[HOST]
    assert running_here(host.sessions, HOST) == [train]  # what a restarted flow_server re-arms

    # the host's flow_server watches its step; the worker dies, heartbeats stop
    lost = Recorder()

    async def report(step: RunningStep, silent_s: float) -> None:
        await lost(step, silent_s)
        await asyncio.to_thread(lose, host, step, silent_s)

    watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=report)
    for step in running_here(host.sessions, HOST):
        watch.watch(step)
    await asyncio.sleep(TIMEOUT_S + 0.3)
    await watch.close()
    assert [s for s, _ in lost.lost] == [train]

    published = [e for t, e in host.drain() if t == topics.STATUS]
    assert [(e.type, e.task, e.body["state"], e.body["attempt"]) for e in published] == [
        ("task.status", "train", "failed", 1)
    ]
    assert (published[0].body["reason"] or "").startswith("worker lost: no heartbeat for ")
    assert not host.apply(published[0])  # the consumer reads it back: already applied
    assert host.job(job_id).step_attempts == {"train": 2}  # retried


async def test_report_lost_retries_kills_the_peers_old_copy_and_ignores_late_words(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path, "auto-retries: 1")
    net = Network(parties, hold_first_train)
    net.run()
    train = RunningStep(job_id, "train", 1)
    net.running.pop((job_id, "train", HOST))  # the host's worker is gone, its copy with it
    assert lose(parties[HOST], train)
    net.run()
    assert states(parties, job_id) == ("success", "success")
    trains = sorted((r.body["party_id"], r.body["attempt"]) for r in net.runs if r.task == "train")
    assert trains == [(GUEST, 1), (GUEST, 2), (HOST, 1), (HOST, 2)]
    assert net.running == {}  # the guest's attempt 1, waiting for the dead host, was stopped
    stops = [e for e in net.control if e.type == "job.stop" and e.task == "train"]
    assert {(e.src, e.body["attempt"]) for e in stops} == {(GUEST, 1), (HOST, 1)}
    # the step has moved on: a second report or the dead attempt's late status change nothing
    assert not lose(parties[HOST], train)
    late = status(HOST, train, "success")
    parties[HOST].apply(late)
    host_train = next(t for t in parties[HOST].job(job_id).tasks if t.step == "train")
    assert (host_train.state, host_train.attempt) == ("success", 2)


async def test_without_retries_a_lost_step_fails_the_job_everywhere_with_the_reason(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_first_train)
    net.run()
    net.running.pop((job_id, "train", HOST))
    assert lose(parties[HOST], RunningStep(job_id, "train", 1), 15.2)
    net.run()
    assert states(parties, job_id) == ("failed", "failed")
    assert lost_reason(15.2) == "worker lost: no heartbeat for 15 s"
    for pid in (GUEST, HOST):
        assert "worker lost: no heartbeat for 15 s" in (parties[pid].job(job_id).reason or "")
    assert net.running == {}  # the guest's copy was killed
    assert running_here(parties[HOST].sessions, HOST) == []


async def test_a_lost_step_that_moved_on_is_left_alone(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_first_train)
    net.run()
    net.finish("train", HOST)  # ended before the timer fired
    assert not lose(parties[HOST], RunningStep(job_id, "train", 1))
    assert not lose(parties[HOST], RunningStep(job_id, "nope", 1))
    assert not lose(parties[HOST], RunningStep("no-such-job", "train", 1))
