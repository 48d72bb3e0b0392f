"""Job lifecycle commands across two parties' databases, messages routed by hand: stop, pause,
resume, rerun, delete, per-step timeout, automatic retries and the acceptance deadline.

Each runs on SQLite and PostgreSQL (the ``databases`` fixture)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flow_helpers import PIPELINE, Databases, LocalParty, job_yaml
from sqlalchemy.orm import Session

from fedcore import topics
from fedcore.envelope import Envelope
from flow_server import protocol
from flow_server.models import Job
from flow_server.states import IllegalTransition

GUEST, HOST = "10000", "20000"
# (step, party, attempt) -> the final state the fake task engine reports, or None: stays running
Policy = Callable[[str, str, int], str | None]


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    both = {
        GUEST: LocalParty(GUEST, {HOST}, databases.new("a"), tmp_path / "out-a", granted=tmp_path),
        HOST: LocalParty(HOST, {GUEST}, databases.new("b"), tmp_path / "out-b", granted=tmp_path),
    }
    yield both
    for party in both.values():
        party.close()


def succeed(step: str, party: str, attempt: int) -> str | None:
    return "success"


class Network:
    """Routes fl.out.ctl between the parties; a fake task engine answers fl.tasks by ``policy``
    and obeys fl.control (a stop reports the named running steps ``canceled``)."""

    def __init__(self, parties: dict[str, LocalParty], policy: Policy = succeed) -> None:
        self.parties = parties
        self.policy = policy
        self.runs: list[Envelope] = []
        self.control: list[Envelope] = []
        self.running: dict[tuple[str, str, str], int] = {}  # (job, step, party) -> attempt

    def _status(self, run: Envelope, state: str, party: str, attempt: int) -> Envelope:
        return Envelope(
            type="task.status",
            job_id=run.job_id,
            task=run.task,
            src=party,
            body={
                "party": party,
                "state": state,
                "reason": f"{state} here" if state != "success" else None,
                "outputs": {"data": "d", "model": "m", "predictions": "p"},
                "attempt": attempt,
            },
        )

    def run(self) -> None:
        moved = True
        while moved:
            moved = False
            for pid, party in self.parties.items():
                for topic, env in party.drain():
                    moved = True
                    if topic == topics.OUT_CTL:
                        assert env.src == pid and env.dst is not None
                        self.parties[env.dst].apply(env)
                    elif topic == topics.TASKS:
                        self.runs.append(env)
                        attempt = env.body["attempt"]
                        assert env.task is not None
                        party.apply(self._status(env, "running", pid, attempt))
                        final = self.policy(env.task, pid, attempt)
                        if final is None:
                            self.running[(env.job_id, env.task, pid)] = attempt
                        else:
                            party.apply(self._status(env, final, pid, attempt))
                    elif topic == topics.CONTROL:
                        self.control.append(env)
                        self._obey(party, pid, env)

    def _obey(self, party: LocalParty, pid: str, env: Envelope) -> None:
        if env.type != "job.stop":
            return
        for (job, step, p), attempt in list(self.running.items()):
            if p == pid and job == env.job_id and env.task in (None, step):
                del self.running[(job, step, p)]
                run = Envelope(type="task.run", job_id=job, task=step, src=pid)
                party.apply(self._status(run, "canceled", pid, attempt))

    def finish(self, step: str, party: str, state: str = "success") -> None:
        """A held step ends."""
        job, _, _ = next(k for k in self.running if k[1:] == (step, party))
        attempt = self.running.pop((job, step, party))
        run = Envelope(type="task.run", job_id=job, task=step, src=party)
        self.parties[party].apply(self._status(run, state, party, attempt))
        self.run()


def submit(parties: dict[str, LocalParty], tmp_path: Path, extra: str = "") -> str:
    guest, host = tmp_path / "g.csv", tmp_path / "h.csv"
    guest.write_text("id\n1\n")
    host.write_text("id\n1\n")
    text = job_yaml(guest, host, tmp_path / "out")
    if extra:
        text = text.replace("max-iter: 30}", f"max-iter: 30, {extra}}}")
    return parties[GUEST].submit(PIPELINE, text)


def command(
    party: LocalParty, job_id: str, op: Callable[..., object], cause: str = "rest/1"
) -> None:
    with party.sessions.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        op(session, party.ctx, job, cause=cause)


def states(parties: dict[str, LocalParty], job_id: str) -> tuple[str, str]:
    return parties[GUEST].job(job_id).state, parties[HOST].job(job_id).state


def hold_train(step: str, party: str, attempt: int) -> str | None:
    return None if step == "train" else "success"


def test_stop_on_the_host_cancels_the_job_everywhere_and_kills_its_steps(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    assert states(parties, job_id) == ("running", "running")
    assert len(net.running) == 2
    command(parties[HOST], job_id, protocol.stop_job)
    net.run()
    assert states(parties, job_id) == ("canceled", "canceled")
    assert parties[GUEST].job(job_id).reason == "stopped on party 20000"
    assert net.running == {}  # both parties' workers were told to stop the step
    assert {e.src for e in net.control if e.type == "job.stop"} == {GUEST, HOST}
    for party in parties.values():
        job = party.job(job_id)
        train = {t.party_id: t.state for t in job.tasks if t.step == "train"}
        assert train == {GUEST: "canceled", HOST: "canceled"}
        # each party's view of the job, as the other reported it
        assert {m.party_id: m.job_state for m in job.members} == {
            GUEST: "canceled",
            HOST: "canceled",
        }
    for op in (protocol.stop_job, protocol.pause_job, protocol.resume_job):
        with pytest.raises(IllegalTransition):
            command(parties[GUEST], job_id, op)


def test_pause_holds_dispatch_and_resume_finishes_the_job(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    with pytest.raises(IllegalTransition):
        command(parties[GUEST], job_id, protocol.resume_job)  # not paused
    command(parties[GUEST], job_id, protocol.pause_job)
    net.run()
    assert states(parties, job_id) == ("paused", "paused")
    assert {(e.src, e.type) for e in net.control} == {(GUEST, "job.pause"), (HOST, "job.pause")}
    net.finish("train", HOST)
    net.finish("train", GUEST)
    # train is done, but nothing new starts while paused
    assert not any(r.task == "evaluate" for r in net.runs)
    command(parties[HOST], job_id, protocol.resume_job)
    net.run()
    assert states(parties, job_id) == ("success", "success")
    assert [r.task for r in net.runs].count("evaluate") == 1
    assert {(e.src, e.type) for e in net.control} >= {(GUEST, "job.resume"), (HOST, "job.resume")}


def test_a_host_failure_fails_both_and_rerun_redoes_only_the_failed_steps(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    broken = {"yes": True}

    def policy(step: str, party: str, attempt: int) -> str | None:
        return "failed" if step == "train" and party == HOST and broken["yes"] else "success"

    job_id = submit(parties, tmp_path)
    net = Network(parties, policy)
    net.run()
    assert states(parties, job_id) == ("failed", "failed")
    reason = parties[GUEST].job(job_id).reason
    assert reason == "step 'train' failed on party 20000: step_failed: the step failed"
    with pytest.raises(IllegalTransition):
        command(parties[GUEST], job_id, protocol.resume_job)

    broken["yes"] = False  # the cause is fixed
    net.runs.clear()
    command(parties[GUEST], job_id, protocol.rerun_job)
    net.run()
    assert states(parties, job_id) == ("success", "success")
    # intersect is not redone; train and what follows run again at attempt 2 on both parties
    assert sorted((r.task, r.body["party_id"], r.body["attempt"]) for r in net.runs) == [
        ("evaluate", GUEST, 2),
        ("train", GUEST, 2),
        ("train", HOST, 2),
    ]
    for party in parties.values():
        attempts = {(t.step, t.party_id): t.attempt for t in party.job(job_id).tasks}
        assert attempts[("intersect", GUEST)] == attempts[("intersect", HOST)] == 1
        assert attempts[("train", GUEST)] == attempts[("train", HOST)] == 2
    with pytest.raises(IllegalTransition):
        command(parties[HOST], job_id, protocol.rerun_job)  # success is not rerunnable


def test_auto_retries_rerun_a_failed_step_on_all_its_parties(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    def policy(step: str, party: str, attempt: int) -> str | None:
        if step == "train" and party == HOST and attempt == 1:
            return "failed"
        if step == "train" and party == GUEST and attempt == 1:
            return None  # blocked waiting for the host, until killed for the retry
        return "success"

    job_id = submit(parties, tmp_path, "auto-retries: 1")
    net = Network(parties, policy)
    net.run()
    assert states(parties, job_id) == ("success", "success")
    trains = sorted((r.body["party_id"], r.body["attempt"]) for r in net.runs if r.task == "train")
    assert trains == [(GUEST, 1), (GUEST, 2), (HOST, 1), (HOST, 2)]
    assert net.running == {}  # the guest's attempt 1 was stopped
    stop = [e for e in net.control if e.type == "job.stop" and e.src == GUEST]
    assert stop and stop[0].task == "train" and stop[0].body["attempt"] == 1


def test_retries_run_out_and_then_the_job_fails(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    def policy(step: str, party: str, attempt: int) -> str | None:
        return "failed" if step == "train" and party == HOST else "success"

    job_id = submit(parties, tmp_path, "auto-retries: 2")
    net = Network(parties, policy)
    net.run()
    assert states(parties, job_id) == ("failed", "failed")
    host_trains = [r.body["attempt"] for r in net.runs if r.task == "train" and r.src == HOST]
    assert host_trains == [1, 2, 3]


def test_a_step_timeout_times_the_job_out_on_both_parties(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    def policy(step: str, party: str, attempt: int) -> str | None:
        if step == "train":
            return "timeout" if party == GUEST else None
        return "success"

    job_id = submit(parties, tmp_path, "task-timeout: 5")
    net = Network(parties, policy)
    net.run()
    assert states(parties, job_id) == ("timeout", "timeout")
    assert "step 'train' timed out on party 10000" in (parties[HOST].job(job_id).reason or "")
    assert net.running == {}  # the host's copy was killed
    run = next(r for r in net.runs if r.task == "train")
    assert run.body["args"]["task-timeout"] == 5  # what the worker enforces


def test_the_acceptance_deadline_times_out_a_job_naming_the_silent_party(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    guest = parties[GUEST]
    guest.drain()  # the proposal is lost: the host never answers
    job = guest.job(job_id)
    assert job.accept_deadline_ms is not None
    with guest.sessions.begin() as session:
        assert not protocol.expire_acceptance(session, guest.ctx, job_id)  # not yet
    with guest.sessions.begin() as session:
        assert protocol.expire_acceptance(
            session, guest.ctx, job_id, now=job.accept_deadline_ms + 1
        )
    job = guest.job(job_id)
    assert job.state == "timeout"
    assert job.reason == "no answer to the proposal from party 20000 within 60 s"
    sent = [e for t, e in guest.drain() if t == topics.OUT_CTL]
    assert [(e.type, e.dst, e.body["state"]) for e in sent] == [("job.status", HOST, "timeout")]
    assert protocol.waiting_for_answers(guest.sessions, guest.ctx) == []


def test_delete_forgets_an_ended_job_everywhere(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, hold_train)
    net.run()
    with pytest.raises(IllegalTransition):
        command(parties[HOST], job_id, protocol.delete_job)  # stop it first
    command(parties[HOST], job_id, protocol.stop_job)
    net.run()
    command(parties[HOST], job_id, protocol.delete_job)
    net.run()
    for party in parties.values():
        with party.sessions() as session:
            assert _get(session, job_id) is None


def _get(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id)
