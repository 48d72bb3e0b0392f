"""Worker heartbeats on the flow_server: the per-step timers, and a lost step failed in the
database, retried on every party or failing the job (SQLite and PostgreSQL, messages routed by
hand as in test_flow_lifecycle).

The timers run on an event loop whose clock moves only when a test advances it (``ClockLoop``),
so the timings asserted here are exact and nothing depends on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from flow_helpers import Databases, LocalParty
from sqlalchemy import select
from test_flow_lifecycle import GUEST, HOST, Network, states, submit

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server import heartbeats
from flow_server.heartbeats import (
    HEARTBEAT,
    HeartbeatWatch,
    RunningStep,
    lost_reason,
    report_lost,
    running_here,
)
from flow_server.models import OutboxRecord

TIMEOUT_S = 15.0
EPOCH = 1_700_000_000.0  # the wall clock when the test's loop clock reads 0


class ClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock stands still until ``advance``: timers fire exactly when due."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def wall(self) -> float:
        """The wall-clock time matching ``now`` (envelopes carry wall-clock timestamps)."""
        return EPOCH + self.now

    async def advance(self, seconds: float) -> None:
        """Move the clock on and let every timer now due, and what it starts, run."""
        self.now += seconds
        for _ in range(10):
            await asyncio.sleep(0)


@pytest.fixture
def loop(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClockLoop]:
    clock = ClockLoop()
    # HeartbeatWatch turns an envelope's wall-clock ts into loop time with time.time()
    monkeypatch.setattr(heartbeats, "time", type("WallClock", (), {"time": clock.wall}))
    yield clock
    clock.run_until_complete(clock.shutdown_default_executor())
    clock.close()


def run(loop: ClockLoop, test: Coroutine[Any, Any, None]) -> None:
    loop.run_until_complete(test)


def heartbeat(loop: ClockLoop, party: str, *steps: RunningStep, age_s: float = 0.0) -> Envelope:
    """A heartbeat sent ``age_s`` ago (read late) listing ``steps``."""
    return Envelope(
        type=HEARTBEAT,
        job_id="",
        src=party,
        ts=loop.wall() - age_s,
        body={
            "party": party,
            "worker": "host:1:2",
            "interval_s": 0.1,
            "running": [{"job_id": s.job_id, "task": s.step, "attempt": s.attempt} for s in steps],
        },
    )


def status(loop: ClockLoop, party: str, step: RunningStep, state: str) -> Envelope:
    return Envelope(
        type="task.status",
        job_id=step.job_id,
        task=step.step,
        src=party,
        ts=loop.wall(),
        body={"party": party, "state": state, "attempt": step.attempt},
    )


class Recorder:
    """The ``lost`` callback: records each report; ``reported`` is set by the first."""

    def __init__(self) -> None:
        self.lost: list[tuple[RunningStep, float]] = []
        self.reported = asyncio.Event()

    async def __call__(self, step: RunningStep, silent_s: float) -> None:
        self.lost.append((step, silent_s))
        self.reported.set()


def test_a_step_heartbeats_keep_alive_is_lost_once_they_stop(loop: ClockLoop) -> None:
    async def scenario() -> None:
        lost = Recorder()
        watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=lost)
        step = RunningStep("1" * 32, "train", 1)
        watch.observe(status(loop, HOST, step, "running"))
        assert watch.watched == {step}
        for _ in range(8):  # 80 s, well past the timeout, covered all along
            await loop.advance(10.0)
            watch.observe(heartbeat(loop, HOST, step))
        assert lost.lost == []
        await loop.advance(TIMEOUT_S - 0.5)
        assert lost.lost == []
        await loop.advance(0.5)
        assert lost.lost == [(step, TIMEOUT_S)]
        assert watch.watched == frozenset()
        await loop.advance(10 * TIMEOUT_S)
        assert len(lost.lost) == 1  # reported once
        await watch.close()

    run(loop, scenario())


def test_ended_steps_other_parties_and_stale_heartbeats(loop: ClockLoop) -> None:
    async def scenario() -> None:
        lost = Recorder()
        watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=lost)
        job = "2" * 32
        done, other = RunningStep(job, "a", 1), RunningStep(job, "b", 1)
        late = RunningStep(job, "c", 2)
        watch.observe(status(loop, HOST, done, "running"))
        watch.observe(status(loop, HOST, done, "success"))  # ended: no longer watched
        watch.observe(heartbeat(loop, GUEST, other))  # another party's worker: not ours to watch
        watch.observe(status(loop, GUEST, other, "running"))
        # read 14 s late: it covers the step from when it was sent, so 1 s is left
        watch.observe(heartbeat(loop, HOST, late, age_s=TIMEOUT_S - 1.0))
        assert watch.watched == {late}
        await loop.advance(1.0)
        assert lost.lost == [(late, TIMEOUT_S)]
        await watch.close()

    run(loop, scenario())


def test_close_cancels_every_timer(loop: ClockLoop) -> None:
    async def scenario() -> None:
        lost = Recorder()
        watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=lost)
        watch.watch(RunningStep("2" * 32, "a", 1))
        await watch.close()
        await loop.advance(2 * TIMEOUT_S)
        assert lost.lost == [] and watch.watched == frozenset()

    run(loop, scenario())


def test_close_cancels_a_report_under_way(loop: ClockLoop) -> None:
    async def scenario() -> None:
        started, cancelled = asyncio.Event(), asyncio.Event()

        async def slow_report(step: RunningStep, silent_s: float) -> None:
            started.set()
            try:
                await asyncio.Event().wait()  # a report that never finishes by itself
            except asyncio.CancelledError:
                cancelled.set()
                raise

        watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=slow_report)
        watch.watch(RunningStep("2" * 32, "a", 1))
        await loop.advance(TIMEOUT_S)
        await started.wait()
        await watch.close()
        assert cancelled.is_set()

    run(loop, scenario())


# --- a lost step in the database, on both backends ---------------------------------------------


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    both = {
        GUEST: LocalParty(GUEST, {HOST}, databases.new("a"), tmp_path / "out-a", granted=tmp_path),
        HOST: LocalParty(HOST, {GUEST}, databases.new("b"), tmp_path / "out-b", granted=tmp_path),
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


def outbox(party: LocalParty) -> list[tuple[str, Envelope]]:
    """What ``party`` has yet to publish, left in place."""
    with party.sessions() as session:
        rows = session.scalars(select(OutboxRecord).order_by(OutboxRecord.id))
        return [(r.topic, Envelope.from_bytes(r.payload)) for r in rows]


def test_a_lost_step_is_retried_on_every_party_and_the_job_succeeds(
    parties: dict[str, LocalParty], tmp_path: Path, loop: ClockLoop
) -> None:
    job_id = submit(parties, tmp_path)  # no auto-retries: a lost worker is the platform's fault
    net = Network(parties, hold_first_train)
    net.run()
    train = RunningStep(job_id, "train", 1)
    host = parties[HOST]
    assert running_here(host.sessions, HOST) == [train]  # what a restarted flow_server re-arms

    async def scenario() -> list[tuple[RunningStep, float]]:
        # the host's flow_server watches its step; the worker dies, heartbeats stop
        lost, written = Recorder(), asyncio.Event()

        async def report(step: RunningStep, silent_s: float) -> None:
            await lost(step, silent_s)
            await asyncio.to_thread(lose, host, step, silent_s)
            written.set()

        watch = HeartbeatWatch(HOST, timeout_s=TIMEOUT_S, lost=report)
        for step in running_here(host.sessions, HOST):
            watch.watch(step)
        await loop.advance(TIMEOUT_S)
        await written.wait()  # the report is in the database before the watch closes
        await watch.close()
        return lost.lost

    assert loop.run_until_complete(scenario()) == [(train, TIMEOUT_S)]

    published = [e for t, e in host.drain() if t == topics.STATUS]
    assert [(e.type, e.task, e.body["state"], e.body["attempt"]) for e in published] == [
        ("task.status", "train", "failed", 1)
    ]
    assert (published[0].body["reason"] or "").startswith("worker lost: no heartbeat for ")
    assert published[0].body["fault"] == "platform"
    assert not host.apply(published[0])  # the consumer reads it back: already applied
    assert host.job(job_id).step_attempts == {"train": 2}  # retried
    assert host.job(job_id).platform_retries == {"train": 1}


def test_report_lost_retries_kills_the_peers_old_copy_and_ignores_late_words(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)  # no auto-retries
    net = Network(parties, hold_first_train)
    net.run()
    train = RunningStep(job_id, "train", 1)
    net.running.pop((job_id, "train", HOST))  # the host's worker is gone, its copy with it
    assert lose(parties[HOST], train)
    # the host restarted the step itself and tells the guest the new attempt, not the failure
    to_guest = [e for t, e in outbox(parties[HOST]) if t == topics.OUT_CTL]
    assert [(e.type, e.body) for e in to_guest] == [
        ("job.rerun", {"attempts": {"train": 2}, "fault": "platform"})
    ]
    net.run()
    assert states(parties, job_id) == ("success", "success")
    trains = sorted((r.body["party_id"], r.body["attempt"]) for r in net.runs if r.task == "train")
    assert trains == [(GUEST, 1), (GUEST, 2), (HOST, 1), (HOST, 2)]
    # the host counts its platform retry; nobody's auto-retries were used
    assert parties[HOST].job(job_id).platform_retries == {"train": 1}
    assert not parties[GUEST].job(job_id).platform_retries
    assert not parties[HOST].job(job_id).step_retries
    assert not parties[GUEST].job(job_id).step_retries
    assert net.running == {}  # the guest's attempt 1, waiting for the dead host, was stopped
    stops = [e for e in net.control if e.type == "job.stop" and e.task == "train"]
    assert {(e.src, e.body["attempt"]) for e in stops} == {(GUEST, 1), (HOST, 1)}
    # the step has moved on: a second report or the dead attempt's late status change nothing
    assert not lose(parties[HOST], train)
    late = Envelope(
        type="task.status",
        job_id=job_id,
        task="train",
        src=HOST,
        body={"party": HOST, "state": "success", "attempt": 1},
    )
    parties[HOST].apply(late)
    host_train = next(t for t in parties[HOST].job(job_id).tasks if t.step == "train")
    assert (host_train.state, host_train.attempt) == ("success", 2)


def hold_train(step: str, party: str, attempt: int) -> str | None:
    """Every attempt of train stays running until a test ends it."""
    return None if step == "train" else "success"


def test_platform_retries_run_out_and_the_lost_step_fails_the_job_everywhere(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    for attempt in (1, 2, 3):  # the default budget is 2: attempts 2 and 3 are the retries
        assert states(parties, job_id) == ("running", "running")
        assert net.running == {(job_id, "train", GUEST): attempt, (job_id, "train", HOST): attempt}
        net.running.pop((job_id, "train", HOST))
        assert lose(parties[HOST], RunningStep(job_id, "train", attempt), 15.2)
        net.run()
    assert states(parties, job_id) == ("failed", "failed")
    assert parties[HOST].job(job_id).platform_retries == {"train": 2}
    assert lost_reason(15.2) == "worker lost: no heartbeat for 15 s"
    for pid in (GUEST, HOST):
        reason = parties[pid].job(job_id).reason or ""
        assert f"step 'train' failed on party {HOST}: worker_lost: " in reason
    host_train = next(t for t in parties[HOST].job(job_id).tasks if t.step == "train")
    assert host_train.reason == "worker lost: no heartbeat for 15 s", "the detail stays here"
    assert net.running == {}  # the guest's copy was killed
    assert running_here(parties[HOST].sessions, HOST) == []


def test_a_party_without_platform_retries_fails_a_lost_step_at_once(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    host = parties[HOST]
    host.ctx = dataclasses.replace(host.ctx, platform_retries=0)
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    net.running.pop((job_id, "train", HOST))
    assert lose(host, RunningStep(job_id, "train", 1))
    net.run()
    assert states(parties, job_id) == ("failed", "failed")
    # the detail stays with the host's task; the guest is told the code
    (lost,) = [t for t in host.job(job_id).tasks if t.party_id == HOST and t.step == "train"]
    assert "worker lost: no heartbeat for 15 s" in (lost.reason or "")
    assert "worker_lost: the worker running the step stopped answering" in (
        parties[GUEST].job(job_id).reason or ""
    )


def test_platform_retries_leave_the_auto_retries_budget_alone(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path, "auto-retries: 1")
    net = Network(parties, hold_train)
    net.run()
    net.running.pop((job_id, "train", HOST))
    assert lose(parties[HOST], RunningStep(job_id, "train", 1))  # platform retry: attempt 2
    net.run()
    for pid in (GUEST, HOST):
        assert not parties[pid].job(job_id).step_retries
    net.finish("train", HOST, "failed")  # the step's own failure: auto-retry, attempt 3
    assert states(parties, job_id) == ("running", "running")
    for pid in (GUEST, HOST):
        job = parties[pid].job(job_id)
        assert (job.step_attempts, job.step_retries) == ({"train": 3}, {"train": 1})
    assert parties[HOST].job(job_id).platform_retries == {"train": 1}  # kept by the auto-retry
    net.running.pop((job_id, "train", HOST))
    assert lose(parties[HOST], RunningStep(job_id, "train", 3))  # second platform retry
    net.run()
    net.finish("train", GUEST)
    net.finish("train", HOST)
    assert states(parties, job_id) == ("success", "success")
    assert parties[GUEST].job(job_id).step_attempts == {"train": 4}


def test_a_workers_platform_fault_is_retried_a_peers_forwarded_failure_is_not(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    """An evicted step pod: the host's task_engine reports ``failed`` with ``fault``."""
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    net.running.pop((job_id, "train", HOST))
    evicted = Envelope(
        type="task.status",
        job_id=job_id,
        task="train",
        src=HOST,
        body={
            "party": HOST,
            "state": "failed",
            "reason": "step pod evicted: The node was low on resource: memory.",
            "attempt": 1,
            "fault": "platform",
        },
    )
    parties[HOST].apply(evicted)
    net.run()
    assert states(parties, job_id) == ("running", "running")
    assert net.running == {(job_id, "train", GUEST): 2, (job_id, "train", HOST): 2}
    # a peer cannot spend this party's budget: its "fault" is a plain failure here
    net.running.pop((job_id, "train", GUEST))
    forged = Envelope(
        type="task.status",
        job_id=job_id,
        task="train",
        src=GUEST,
        body={"party": GUEST, "state": "failed", "attempt": 2, "fault": "platform"},
    )
    parties[HOST].apply(forged)
    host_job = parties[HOST].job(job_id)
    assert (host_job.state, host_job.step_attempts) == ("failed", {"train": 2})
    assert host_job.platform_retries == {"train": 1}


def test_a_platform_rerun_does_not_revive_a_job_that_ended(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    net.finish("train", GUEST, "failed")  # the guest's own failure ends the job everywhere
    assert states(parties, job_id) == ("failed", "failed")
    late = Envelope(
        type="job.rerun",
        job_id=job_id,
        src=HOST,
        dst=GUEST,
        body={"attempts": {"train": 2}, "fault": "platform"},
    )
    parties[GUEST].apply(late)
    net.run()
    assert states(parties, job_id) == ("failed", "failed")


def test_a_lost_step_that_moved_on_is_left_alone(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_first_train)
    net.run()
    net.finish("train", HOST)  # ended before the timer fired
    assert not lose(parties[HOST], RunningStep(job_id, "train", 1))
    assert not lose(parties[HOST], RunningStep(job_id, "nope", 1))
    assert not lose(parties[HOST], RunningStep("no-such-job", "train", 1))
