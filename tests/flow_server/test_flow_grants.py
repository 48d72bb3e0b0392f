"""Grants, the acceptance policy and the record of decisions, on SQLite and PostgreSQL: a peer's
proposal uses this party's data only through a grant, the refusal reads the same whether a path
exists or not, a manual policy holds the job in ``pending_approval`` until approved, rejected or
timed out, and every decision is kept."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flow_helpers import PIPELINE, Databases, LocalParty, job_yaml
from test_flow_protocol import Network

from fedcore import topics
from flow_server import decisions, grants, protocol
from flow_server.models import DataGrant, Decision, now_ms
from flow_server.policy import Policy

GUEST, HOST = "10000", "20000"


@pytest.fixture
def parties(databases: Databases, tmp_path: Path) -> Iterator[dict[str, LocalParty]]:
    """The guest grants nothing; the host grants only what each test gives it."""
    both = {
        GUEST: LocalParty(GUEST, {HOST}, databases.new("a"), tmp_path / "out-a"),
        HOST: LocalParty(HOST, {GUEST}, databases.new("b"), tmp_path / "out-b"),
    }
    yield both
    for party in both.values():
        party.close()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    granted = tmp_path / "granted"
    granted.mkdir()
    secret = tmp_path / "secret"
    secret.mkdir()
    paths = {
        "guest": tmp_path / "guest.csv",
        "host": granted / "host.csv",
        "granted": granted,
        "secret": secret / "key.pem",
        "missing": secret / "no-such-file.pem",
    }
    paths["guest"].write_text("id,y\n1,0\n")
    paths["host"].write_text("id,x\n1,2\n")
    paths["secret"].write_text("-----BEGIN PRIVATE KEY-----\n")
    return paths


def _propose(
    parties: dict[str, LocalParty], host_input: object, tmp_path: Path, *, pipeline: str = PIPELINE
) -> tuple[str, Network]:
    text = job_yaml(tmp_path / "guest.csv", str(host_input), tmp_path / "out")
    job_id = parties[GUEST].submit(pipeline, text)
    net = Network(parties)
    net.run()
    return job_id, net


def _host_runs(net: Network) -> list[str]:
    return [str(r.task) for r in net.runs if r.body["party_id"] == HOST]


def _refusal(parties: dict[str, LocalParty], job_id: str) -> str:
    host, guest = parties[HOST].job(job_id), parties[GUEST].job(job_id)
    assert host.state == "rejected", host.reason
    assert guest.state == "rejected", guest.reason
    return str(host.reason)


@pytest.mark.parametrize("case", ["secret file", "missing path", "system file", "ungranted table"])
def test_an_input_that_is_not_granted_is_refused_in_the_same_words(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path, case: str
) -> None:
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    value = {
        "secret file": files["secret"],
        "missing path": files["missing"],
        "system file": "/etc/passwd",
        "ungranted table": "table:host",
    }[case]
    before = files["secret"].stat()
    job_id, net = _propose(parties, value, tmp_path)
    reason = _refusal(parties, job_id)
    assert reason.endswith("step 'intersect' input 'data' ($input): not granted to 10000")
    assert str(value) not in reason and "exist" not in reason
    assert _host_runs(net) == [] and not net.runs
    assert files["secret"].stat() == before  # untouched


def test_existing_and_missing_paths_read_alike(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    reasons = []
    for value in (files["secret"], files["missing"], tmp_path / "../../etc/passwd"):
        job_id, _ = _propose(parties, value, tmp_path)
        reasons.append(parties[GUEST].job(job_id).reason)
    assert len(set(reasons)) == 1, reasons


def test_a_path_under_a_granted_directory_is_admitted(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    grant_id = parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    job_id, net = _propose(parties, files["host"], tmp_path)
    assert parties[HOST].job(job_id).state == "success"
    assert "intersect" in _host_runs(net)
    with parties[HOST].sessions() as s:
        rows = s.query(Decision).filter_by(job_id=job_id).all()
    assert [(r.decision, r.decided_by) for r in rows] == [("accepted", "policy")]
    assert grant_id in rows[0].rule
    assert rows[0].party_args["input"] == str(files["host"])  # the proposal as it arrived


def test_a_missing_granted_file_is_told_to_the_initiator_by_its_code_only(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    job_id, net = _propose(parties, files["granted"] / "gone.csv", tmp_path)
    _refusal(parties, job_id)
    assert parties[GUEST].job(job_id).reason == (
        f"party {HOST} rejected the job: data_not_found at parties-args.{HOST}.input"
    )
    assert "gone.csv" in str(parties[HOST].job(job_id).reason), "the detail stays on the host"
    assert not net.runs


def test_dot_dot_and_symlinks_do_not_lead_out_of_a_grant(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    link = files["granted"] / "link.pem"
    os.symlink(files["secret"], link)
    for value in (files["granted"] / ".." / "secret" / "key.pem", link):
        job_id, net = _propose(parties, value, tmp_path)
        assert _refusal(parties, job_id).endswith("not granted to 10000")
        assert not net.runs


def test_a_granted_table_is_named_and_resolved_on_the_host(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    from flow_server import datasets

    with parties[HOST].sessions.begin() as s:
        datasets.create_table(
            s,
            table_id="t1",
            name="host",
            path=files["host"],
            source="path",
            schema=datasets.read_sample(files["host"]),
            counter=datasets.count_lines(files["host"]),
        )
    job_id, _ = _propose(parties, "table:host", tmp_path)
    refused = _refusal(parties, job_id)
    parties[HOST].grant(GUEST, table="host", role="host")
    job_id, _ = _propose(parties, "table:host", tmp_path)
    host = parties[HOST].job(job_id)
    assert host.state == "success", host.reason
    assert host.party_args["input"] == str(files["host"])
    missing_id, _ = _propose(parties, "table:no-such-table", tmp_path)
    assert parties[HOST].job(missing_id).reason == refused


def test_expired_and_revoked_grants_admit_nothing(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    grant_id = parties[HOST].grant(
        GUEST, path=str(files["granted"]), role="host", expires_ms=now_ms() + 60_000
    )
    with parties[HOST].sessions.begin() as s:
        row = s.get(DataGrant, grant_id)
        assert row is not None
        row.expires_ms = now_ms() - 1  # lapsed since
    job_id, net = _propose(parties, files["host"], tmp_path)
    assert _refusal(parties, job_id).endswith("not granted to 10000") and not net.runs
    grant_id = parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    with parties[HOST].sessions.begin() as s:
        row = s.get(DataGrant, grant_id)
        assert row is not None
        grants.revoke_grant(s, row, by="alice")
        assert grants.grant_state(row) == "revoked" and row.revoked_by == "alice"
    job_id, net = _propose(parties, files["host"], tmp_path)
    assert _refusal(parties, job_id).endswith("not granted to 10000") and not net.runs


def test_a_host_grant_does_not_let_the_data_serve_as_guest(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    flipped = job_yaml(files["guest"], files["host"], tmp_path / "out").replace(
        '"10000=guest", "20000=host"', '"10000=host", "20000=guest"'
    )
    job_id = parties[GUEST].submit(PIPELINE, flipped)
    Network(parties).run()
    reason = _refusal(parties, job_id)
    assert "granted to 10000 as host only, not as guest (floor guest-data" in reason
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="guest")
    job_id = parties[GUEST].submit(PIPELINE, flipped)
    Network(parties).run()
    assert parties[HOST].job(job_id).state == "success"


def test_a_grant_for_some_components_refuses_the_others(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    parties[HOST].grant(
        GUEST, path=str(files["granted"]), role="host", components=["intersect", "scale"]
    )
    job_id, net = _propose(parties, files["host"], tmp_path)
    assert "not granted to 10000 for component(s) hetero_lr" in _refusal(parties, job_id)
    assert not net.runs


def test_the_policy_refuses_components_and_roles_it_does_not_run(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    host = parties[HOST]
    host.ctx = replace(host.ctx, policy=Policy(components=frozenset({"intersect"})))
    job_id, _ = _propose(parties, files["host"], tmp_path)
    assert "runs no component hetero_lr" in _refusal(parties, job_id)
    host.ctx = replace(host.ctx, policy=Policy(roles=frozenset({"guest"})))
    job_id, _ = _propose(parties, files["host"], tmp_path)
    assert "takes no role host" in _refusal(parties, job_id)
    with host.sessions() as s:
        rows, total = decisions.list_decisions(
            s, job_id=None, initiator=GUEST, decision="rejected", limit=10, offset=0
        )
    assert total == 2 and {r.code for r in rows} == {"component_not_allowed", "role_not_allowed"}


def test_the_initiators_own_args_are_its_own_business(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    """The guest names its own file outside any grant: only the host's inputs need grants."""
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    job_id, _ = _propose(parties, files["host"], tmp_path)
    assert parties[GUEST].job(job_id).state == "success"


# --- manual approval ---------------------------------------------------------------------------


def _manual(parties: dict[str, LocalParty], files: dict[str, Path], **policy: object) -> None:
    parties[HOST].grant(GUEST, path=str(files["granted"]), role="host")
    host = parties[HOST]
    host.ctx = replace(host.ctx, policy=Policy(**policy))  # type: ignore[arg-type]


def _decide(party: LocalParty, job_id: str, action: str, **kwargs: object) -> None:
    with party.sessions.begin() as s:
        job = s.get(protocol.approvals.Job, job_id)
        assert job is not None
        if action == "approve":
            protocol.approve_job(s, party.ctx, job, by="alice", cause=f"test/{action}")
        else:
            protocol.reject_job(s, party.ctx, job, by="alice", cause=f"test/{action}", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", [{"mode": "manual"}, {"manual_peers": frozenset({GUEST})}])
def test_a_held_proposal_waits_visibly_and_runs_once_approved(
    parties: dict[str, LocalParty],
    files: dict[str, Path],
    tmp_path: Path,
    policy: dict[str, object],
) -> None:
    _manual(parties, files, **policy)
    job_id, net = _propose(parties, files["host"], tmp_path)
    host, guest = parties[HOST].job(job_id), parties[GUEST].job(job_id)
    assert host.state == "pending_approval" and host.accept_deadline_ms is not None
    assert guest.state == "waiting"
    member = next(m for m in guest.members if m.party_id == HOST)
    assert (member.answer, member.job_state) == ("pending", "pending_approval")
    assert not net.runs
    _decide(parties[HOST], job_id, "approve")
    net.run()
    assert parties[HOST].job(job_id).state == "success"
    assert parties[GUEST].job(job_id).state == "success"
    with parties[HOST].sessions() as s:
        rows = s.query(Decision).filter_by(job_id=job_id).order_by(Decision.id).all()
    assert [(r.decision, r.decided_by) for r in rows] == [
        ("pending_approval", "policy"),
        ("approved", "alice"),
    ]
    assert rows[0].rule in ("ACCEPT_POLICY=manual", "ACCEPT_MANUAL_PEERS lists 10000")


def test_a_rejection_tells_the_initiator_who_and_why(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    _manual(parties, files, mode="manual")
    job_id, net = _propose(parties, files["host"], tmp_path)
    _decide(parties[HOST], job_id, "reject", reason="not this quarter")
    net.run()
    guest = parties[GUEST].job(job_id)
    assert guest.state == "rejected"
    assert guest.reason == (
        "party 20000 rejected the job: rejected by its operator: not this quarter"
    )
    assert not net.runs
    with pytest.raises(protocol.approvals.states.IllegalTransition):
        _decide(parties[HOST], job_id, "approve")  # decided already


def test_a_grant_revoked_while_the_proposal_waits_refuses_it_at_approval(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    _manual(parties, files, mode="manual")
    job_id, net = _propose(parties, files["host"], tmp_path)
    with parties[HOST].sessions.begin() as s:
        for row in s.query(DataGrant).all():
            grants.revoke_grant(s, row, by="bob")
    _decide(parties[HOST], job_id, "approve")
    net.run()
    host, guest = parties[HOST].job(job_id), parties[GUEST].job(job_id)
    assert host.state == guest.state == "rejected"
    assert "not granted to 10000 (checked again at approval)" in str(guest.reason)
    assert not net.runs
    with parties[HOST].sessions() as s:
        last = decisions.latest(s, job_id)
        assert last is not None
        assert (last.decision, last.decided_by, last.code) == ("rejected", "alice", "not_granted")


def test_an_output_grant_revoked_while_the_proposal_waits_is_not_honoured(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    _manual(parties, files, mode="manual")
    output = parties[HOST].grant(GUEST, kind="output", path=str(tmp_path / "out"))
    job_id, net = _propose(parties, files["host"], tmp_path)
    held = parties[HOST].job(job_id).output_placement
    assert held is not None and held["chosen_by"] == "grant"
    with parties[HOST].sessions.begin() as s:
        grant = s.get(DataGrant, output)
        assert grant is not None
        grants.revoke_grant(s, grant, by="bob")
    _decide(parties[HOST], job_id, "approve")
    net.run()
    host = parties[HOST].job(job_id)
    assert host.state == "success"
    assert host.output_placement is not None
    assert host.output_placement["chosen_by"] == "settings"
    assert host.output_placement["root"] == str(parties[HOST].ctx.default_output)


def test_no_decision_ends_the_job_at_the_deadline_on_both_parties(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    _manual(parties, files, mode="manual")
    job_id, net = _propose(parties, files["host"], tmp_path)
    host = parties[HOST]
    assert [j for j, _ in protocol.waiting_for_answers(host.sessions, host.ctx)] == [job_id]
    with host.sessions.begin() as s:
        assert not protocol.expire_acceptance(s, host.ctx, job_id)  # not yet
        assert protocol.expire_acceptance(s, host.ctx, job_id, now=now_ms() + 10**9)
    net.run()
    assert host.job(job_id).state == "timeout"
    guest = parties[GUEST].job(job_id)
    assert guest.state == "timeout"
    assert guest.reason == "party 20000's operator did not decide within 60 s"
    with host.sessions() as s:
        last = decisions.latest(s, job_id)
        assert last is not None and (last.decision, last.decided_by) == ("expired", "deadline")


def test_nothing_is_sent_to_the_workers_of_a_refusing_party(
    parties: dict[str, LocalParty], files: dict[str, Path], tmp_path: Path
) -> None:
    text = job_yaml(files["guest"], "/etc/passwd", tmp_path / "out")
    parties[GUEST].submit(PIPELINE, text)
    for topic, env in parties[GUEST].drain():
        if topic == topics.OUT_CTL:
            parties[HOST].apply(env)
    assert [t for t, _ in parties[HOST].drain() if t in (topics.TASKS, topics.CONTROL)] == []


# --- making grants -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"peer": "x", "path": "/data"}, "bad_peer"),
        ({"path": "data/relative"}, "bad_path"),
        ({"path": "/"}, "bad_path"),
        ({"path": "/data", "table": "t"}, "bad_grant"),
        ({}, "bad_grant"),
        ({"table": "nope"}, "table_not_found"),
        ({"path": "/data", "role": "boss"}, "bad_role"),
        ({"path": "/data", "kind": "output", "role": "host"}, "bad_grant"),
        ({"path": "/data", "expires_ms": 1}, "bad_expiry"),
        ({"path": "/data", "components": ["nope"]}, "unknown_component"),
        ({"peer": "30000", "path": "/data"}, "unknown_party"),
    ],
)
def test_a_bad_grant_says_what_is_wrong(
    parties: dict[str, LocalParty], kwargs: dict[str, object], code: str
) -> None:
    args: dict[str, object] = {"peer": GUEST, "kind": "input", "role": "host", **kwargs}
    with parties[HOST].sessions.begin() as s, pytest.raises(grants.GrantInvalid) as info:
        grants.create_grant(
            s,
            created_by="test",
            known_peers={GUEST},
            known_components={"intersect"},
            **args,  # type: ignore[arg-type]
        )
    assert info.value.code == code


def test_output_grants_are_looked_up_by_prefix(parties: dict[str, LocalParty]) -> None:
    parties[HOST].grant(GUEST, kind="output", path="/srv/outputs/10000")
    with parties[HOST].sessions() as s:
        assert grants.output_grant(s, peer=GUEST, path="/srv/outputs/10000/job1") is not None
        assert grants.output_grant(s, peer=GUEST, path="/srv/outputs/100001") is None
        assert grants.output_grant(s, peer="30000", path="/srv/outputs/10000/x") is None
        # an output grant admits no input
        assert grants.input_grant(s, peer=GUEST, value="/srv/outputs/10000/x") is None


def test_grants_from_the_settings_are_made_once(
    parties: dict[str, LocalParty], files: dict[str, Path]
) -> None:
    host = parties[HOST]
    for _ in range(2):
        with host.sessions.begin() as s:
            grants.ensure_setting_grants(s, {GUEST: [files["granted"]]})
    with host.sessions.begin() as s:
        rows, total = grants.list_grants(s)
        assert total == 1 and rows[0].created_by == "settings (GRANT_INPUT_PATHS_10000)"
        grants.revoke_grant(s, rows[0], by="alice")
    with host.sessions.begin() as s:
        grants.ensure_setting_grants(s, {GUEST: [files["granted"]]})
        rows, total = grants.list_grants(s, active_only=True)
        assert total == 0  # a revoked settings grant stays revoked across restarts
