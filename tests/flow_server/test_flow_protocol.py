"""The cross-party protocol on two parties' databases, with the messages routed by hand.

Propose → accept → start → task.run → task.status → forwarded status → next steps → success,
plus rejections, failures and re-delivered events.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from flow_helpers import PIPELINE, Databases, LocalParty, job_yaml

from fedcore import topics
from fedcore.envelope import Envelope
from fedcore.version import TESSERA_VERSION
from flow_server.dsl import DslError
from flow_server.models import Job
from flow_server.protocol import ProtocolError
from flow_server.states import IllegalTransition

Outbox = list[tuple[str, Envelope]]
# a failure's local detail, as a step reports it: it quotes a path and a header of the party's data
LOCAL_DETAIL = "DataError: no column 'income' in /srv/secret/host.csv"


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    both = {
        "10000": LocalParty(
            "10000", {"20000"}, databases.new("a"), tmp_path / "out-a", granted=tmp_path
        ),
        "20000": LocalParty(
            "20000", {"10000"}, databases.new("b"), tmp_path / "out-b", granted=tmp_path
        ),
    }
    yield both
    for party in both.values():
        party.close()


class Network:
    """Routes fl.out.ctl to the destination party; a fake task engine answers fl.tasks."""

    def __init__(self, parties: dict[str, LocalParty], fail: tuple[str, str] | None = None):
        self.parties = parties
        self.fail = fail  # (step, party) whose task fails
        self.runs: list[Envelope] = []
        self.announced: list[Envelope] = []
        self.ctl: list[Envelope] = []

    def task_engine(self, run: Envelope) -> list[Envelope]:
        party = run.body["party_id"]
        failing = self.fail == (run.task, party)
        outputs = {n: f"{run.body['output_dir']}/{n}" for n in ("data", "model", "predictions")}
        return [
            Envelope(
                type="task.status",
                job_id=run.job_id,
                task=run.task,
                src=party,
                body={"party": party, "state": "running"},
            ),
            Envelope(
                type="task.status",
                job_id=run.job_id,
                task=run.task,
                src=party,
                body={
                    "party": party,
                    "state": "failed" if failing else "success",
                    "reason": LOCAL_DETAIL if failing else None,
                    "code": "bad_data" if failing else None,
                    "outputs": {} if failing else outputs,
                },
            ),
        ]

    def run(self) -> None:
        """Deliver until nothing moves."""
        moved = True
        while moved:
            moved = False
            for pid, party in self.parties.items():
                for topic, env in party.drain():
                    moved = True
                    if topic == topics.OUT_CTL:
                        self.ctl.append(env)
                        assert env.src == pid and env.dst in self.parties
                        self.parties[env.dst].apply(env)
                    elif topic == topics.TASKS:
                        self.runs.append(env)
                        for status in self.task_engine(env):
                            party.apply(status)
                    elif topic == topics.STATUS:
                        if env.type == "job.status":  # not the record of decisions
                            self.announced.append(env)
                        assert not party.apply(env)  # our own job.status is skipped


def submit(parties: dict[str, LocalParty], tmp_path: Path) -> str:
    guest, host = tmp_path / "g.csv", tmp_path / "h.csv"
    guest.write_text("id\n1\n")
    host.write_text("id\n1\n")
    return parties["10000"].submit(PIPELINE, job_yaml(guest, host, tmp_path / "out"))


def test_a_job_runs_to_success_on_both_parties(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties)
    net.run()
    guest, host = parties["10000"].job(job_id), parties["20000"].job(job_id)
    assert (guest.state, host.state) == ("success", "success")
    assert host.initiator == "10000" and host.pipeline_id is None
    # the host knows only its own args; the guest's never reached it
    assert "g.csv" not in repr(host.party_args) + repr(host.common_args)
    assert [t.step for t in guest.tasks if t.party_id == "10000"] == [
        "intersect",
        "train",
        "evaluate",
    ]
    # each party sees the other's task states
    assert {(t.step, t.party_id, t.state) for t in host.tasks} == {
        ("intersect", "10000", "success"),
        ("intersect", "20000", "success"),
        ("train", "10000", "success"),
        ("train", "20000", "success"),
        ("evaluate", "10000", "success"),
    }
    kinds = [e.type for e in net.ctl]
    assert kinds[:3] == ["job.propose", "job.accept", "job.start"]
    assert sorted((r.task, r.body["party_id"]) for r in net.runs) == sorted(
        [
            ("intersect", "10000"),
            ("intersect", "20000"),
            ("train", "10000"),
            ("train", "20000"),
            ("evaluate", "10000"),
        ]
    )
    states = [(e.src, e.body["state"]) for e in net.announced]
    assert ("10000", "success") in states and ("20000", "success") in states


def test_task_run_carries_what_the_step_needs(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties)
    net.run()
    run = {(r.task, r.body["party_id"]): r for r in net.runs}
    first = run[("intersect", "20000")].body
    assert first["component"] == "intersect" and first["role"] == "host"
    assert first["parties"] == {"guest": ["10000"], "host": ["20000"]}
    assert first["inputs"] == {"data": str(tmp_path / "h.csv")}
    # the output job.yaml names for 20000 is 10000's wish, not granted: 20000 writes in its own
    assert first["output_dir"] == f"{tmp_path / 'out-b'}/{job_id}/20000/intersect"
    assert first["attempt"] == 1
    assert first["fed_since_ms"] == parties["20000"].job(job_id).fed_since_ms
    train = run[("train", "10000")].body
    assert train["inputs"] == {"data": f"{tmp_path / 'out'}/{job_id}/10000/intersect/data"}
    assert train["args"]["max-iter"] == 30  # common-args over the step's 5
    assert train["args"]["learning-rate"] == 0.15
    assert train["args"]["spark-master-name"] == "local[*]"
    assert run[("train", "20000")].body["args"]["hadoop-config"] == "/etc/hadoop"


def test_a_task_failure_fails_the_job_everywhere(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    net = Network(parties, fail=("train", "20000"))
    net.run()
    public = "bad_data: the party's input data cannot be used by this step"
    for party in parties.values():
        job = party.job(job_id)
        assert job.state == "failed"
        assert job.reason == f"step 'train' failed on party 20000: {public}"
    # the local detail stays on 20000: its own task keeps it, nothing sent to 10000 carries it
    train = next(t for t in parties["20000"].job(job_id).tasks if t.step == "train")
    assert (train.reason, train.code) == (LOCAL_DETAIL, "bad_data")
    told = [e for e in net.ctl if e.src == "20000"]
    assert told and not any("secret" in repr(e.body) or "income" in repr(e.body) for e in told)
    (forwarded,) = [e for e in told if e.type == "task.status" and e.body["state"] == "failed"]
    assert (forwarded.body["reason"], forwarded.body["code"]) == (public, "bad_data")
    assert not any(r.task == "evaluate" for r in net.runs)


def test_a_party_rejects_a_job_whose_data_it_lacks(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    guest = tmp_path / "g.csv"
    guest.write_text("id\n1\n")
    job_id = parties["10000"].submit(PIPELINE, job_yaml(guest, tmp_path / "nope.csv", tmp_path))
    net = Network(parties)
    net.run()
    host, initiator = parties["20000"].job(job_id), parties["10000"].job(job_id)
    assert host.state == "rejected" and "nope.csv" in (host.reason or "")
    assert initiator.state == "rejected"
    assert initiator.reason is not None and initiator.reason.startswith("party 20000 rejected")
    assert [e.type for e in net.ctl] == ["job.propose", "job.reject", "job.status"]
    assert net.runs == []


def test_the_initiator_refuses_a_job_for_unknown_parties(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    text = job_yaml("a", "b", "o").replace("20000", "30000")
    with pytest.raises(DslError) as info:
        parties["10000"].submit(PIPELINE, text)
    assert info.value.code == "unknown_party"


def test_a_proposal_from_an_unknown_party_is_refused_unanswered(
    parties: dict[str, LocalParty],
) -> None:
    host = parties["20000"]
    job_id = uuid.uuid4().hex
    env = Envelope(
        type="job.propose",
        job_id=job_id,
        src="99999",
        dst="20000",
        body={
            "pipeline": PIPELINE,
            "pipeline_name": "hetero-lr",
            "parties": ["99999=guest", "20000=host"],
            "common_args": {},
            "party_args": {"input": "x"},
            "initiator": "99999",
            "tessera_version": TESSERA_VERSION,
            "component_versions": {},
        },
    )
    with pytest.raises(ProtocolError, match="99999, not a known peer"):
        host.apply(env)
    assert host.drain() == []  # no answer goes to a party this one does not know
    with host.sessions() as s:
        assert s.get(Job, job_id) is None


def test_every_event_applied_twice_is_harmless(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)

    class Twice(Network):
        def run(self) -> None:
            for party in self.parties.values():
                original = party.apply

                def apply(env: Envelope, original=original) -> bool:  # type: ignore[no-untyped-def]
                    first = original(env)
                    assert original(env) is False  # the second delivery is skipped
                    return first

                party.apply = apply  # type: ignore[method-assign]
            super().run()

    net = Twice(parties)
    net.run()
    assert parties["10000"].job(job_id).state == "success"
    assert len(net.runs) == 5


def test_a_late_running_status_does_not_undo_success(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    Network(parties).run()
    guest = parties["10000"]
    guest.apply(
        Envelope(
            type="task.status",
            job_id=job_id,
            task="train",
            src="20000",
            dst="10000",
            body={"party": "20000", "state": "running"},
        )
    )
    job = guest.job(job_id)
    assert job.state == "success"
    assert {t.state for t in job.tasks} == {"success"}


def test_a_single_party_job_starts_at_once(database_url: str, tmp_path: Path) -> None:
    solo = LocalParty("10000", set(), database_url, tmp_path / "out")
    pipeline = (
        "name: solo\nsteps:\n"
        "  - {name: evaluate, component: evaluation, inputs: {predictions: $predictions}}\n"
    )
    preds = tmp_path / "p.csv"
    preds.write_text("y,p\n1,0.9\n")
    job_id = solo.submit(
        pipeline, f'parties: ["10000=guest"]\nparties-args:\n  10000: {{predictions: {preds}}}\n'
    )
    out = solo.drain()
    assert [(t, e.type) for t, e in out] == [
        (topics.STATUS, "job.status"),
        (topics.STATUS, "job.status"),
        (topics.TASKS, "task.run"),
    ]
    assert solo.job(job_id).state == "running"
    assert out[2][1].body["output_dir"] == f"{tmp_path / 'out'}/{job_id}/10000/evaluate"


def _status(job_id: str, step: str, party: str, state: str, dst: str) -> Envelope:
    return Envelope(
        type="task.status",
        job_id=job_id,
        task=step,
        src=party,
        dst=dst,
        body={"party": party, "state": state, "reason": "late"},
    )


def test_a_contradictory_task_status_is_an_error_and_writes_nothing(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    Network(parties).run()
    guest = parties["10000"]
    with pytest.raises(
        IllegalTransition, match=r"step 'train' on party 20000.*'success'.*'failed'"
    ):
        guest.apply(_status(job_id, "train", "20000", "failed", "10000"))
    job = guest.job(job_id)
    assert job.state == "success"
    assert {t.state for t in job.tasks} == {"success"}
    assert guest.drain() == []


def test_a_peer_rejecting_a_running_job_is_an_error(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    guest, host = parties["10000"], parties["20000"]
    net = Network(parties)
    net.task_engine = lambda run: []  # type: ignore[method-assign]  # steps never end
    net.run()
    assert guest.job(job_id).state == "running"
    bad = Envelope(
        type="job.status",
        job_id=job_id,
        src="20000",
        dst="10000",
        body={"state": "rejected", "reason": "changed my mind"},
    )
    with pytest.raises(IllegalTransition, match=rf"job {job_id}: .*'running'.*'rejected'"):
        guest.apply(bad)
    assert guest.job(job_id).state == "running"
    assert host.job(job_id).state == "running"


def test_a_late_ending_after_the_job_ended_is_a_no_op(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    Network(parties, fail=("train", "20000")).run()
    guest = parties["10000"]
    assert guest.job(job_id).state == "failed"
    reason = guest.job(job_id).reason
    late = Envelope(
        type="job.status",
        job_id=job_id,
        src="20000",
        dst="10000",
        body={"state": "canceled", "reason": "too late"},
    )
    assert guest.apply(late) is True
    assert (guest.job(job_id).state, guest.job(job_id).reason) == ("failed", reason)
    assert guest.drain() == []


def test_a_status_of_an_older_attempt_is_ignored(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    job_id = submit(parties, tmp_path)
    Network(parties).run()
    guest = parties["10000"]
    newer = _status(job_id, "train", "20000", "running", "10000")
    newer.body["attempt"] = 2
    guest.apply(newer)
    older = _status(job_id, "train", "20000", "failed", "10000")
    older.body["attempt"] = 1
    guest.apply(older)
    task = next(t for t in guest.job(job_id).tasks if (t.step, t.party_id) == ("train", "20000"))
    assert (task.state, task.attempt) == ("running", 2)


def _proposal_to_host(parties: dict[str, LocalParty], tmp_path: Path) -> Envelope:
    guest, host = tmp_path / "g.csv", tmp_path / "h.csv"
    guest.write_text("id,y\n1,0\n")
    host.write_text("id,x\n1,0.5\n")
    parties["10000"].submit(PIPELINE, job_yaml(guest, host, tmp_path))
    return next(e for _, e in parties["10000"].drain() if e.type == "job.propose")


def test_the_proposal_carries_the_tessera_and_component_versions(
    parties: dict[str, LocalParty], tmp_path: Path
) -> None:
    body = _proposal_to_host(parties, tmp_path).body
    assert body["tessera_version"] == TESSERA_VERSION
    assert body["component_versions"] == {
        "intersect": "1",
        "hetero_lr": "1",
        "evaluation": "1",
    }


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"tessera_version": "99.0.0"}, "Tessera 99.0.0"),
        ({"tessera_version": None}, "does not say its Tessera version"),
        ({"component_versions": {"intersect": "1", "hetero_lr": "2", "evaluation": "1"}},
         "component hetero_lr: the initiator runs version 2"),
    ],
)  # fmt: skip
def test_a_proposal_of_another_version_is_rejected_with_what_differs(
    parties: dict[str, LocalParty], tmp_path: Path, change: dict[str, object], needle: str
) -> None:
    propose = _proposal_to_host(parties, tmp_path)
    host = parties["20000"]
    host.apply(propose.model_copy(update={"body": {**propose.body, **change}}))
    reject = [e for _, e in host.drain() if e.type == "job.reject"]
    assert len(reject) == 1 and needle in reject[0].body["reason"]
    assert host.job(propose.job_id).state == "rejected"
