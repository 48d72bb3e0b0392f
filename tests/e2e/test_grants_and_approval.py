"""End to end, two real parties on real Kafka: the guest (10000) acts as a hostile initiator
against the host's data, and the host's operator approves, rejects or ignores proposals.

The host runs ``ACCEPT_POLICY=manual``: what its grants refuse is refused at once, what they
allow waits for its operator. Every hostile case — the host's private key as input, a system
file, a missing path, an ungranted table, an expired grant, a grant revoked while the proposal
waits — is refused in the same words whether or not the file exists, no ``task.run`` reaches the
host's workers, and the file is untouched. The host's operator approves one proposal with the
dashboard's button in headless Chromium and watches the job run there. (test_party_floors has
the hostile cases the host's floors refuse.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties
from test_two_parties import _inbound_envelopes

from fedcore import topics
from real_parts import chromium_browser
from tessera.example import PIPELINE_YAML
from tessera.sdk import JobDetail, Tessera

pytestmark = pytest.mark.e2e

ACCEPT_TIMEOUT_S = 25
NOT_GRANTED = (
    f"party {HOST} rejected the job: parties-args.{HOST}.input: "
    f"step 'intersect' input 'data' ($input): not granted to {GUEST}"
)
T = TypeVar("T")


@pytest.fixture(scope="module")
def party_env() -> Mapping[str, str]:
    return {"ACCEPT_POLICY": "manual", "ACCEPT_TIMEOUT_S": str(ACCEPT_TIMEOUT_S)}


def _until(what: str, probe: Callable[[], T | None], timeout_s: float = 120.0) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.3)


def _job(flow: Tessera, job_id: str, *states: str) -> JobDetail | None:
    job = flow.job(job_id)
    return job if job.state in states else None


class Hostile:
    """The guest proposing jobs with whatever it likes as the host's input."""

    def __init__(self, parties: TwoParties) -> None:
        self.parties = parties
        with parties.flow(GUEST) as guest:
            self.pipeline_id = guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id

    def propose(self, host_input: str) -> str:
        job = yaml.safe_load(self.parties.job_text())
        job["common-args"]["max-iter"] = 2
        for key, args in job["parties-args"].items():
            if str(key) == HOST:
                args["input"] = host_input
        with self.parties.flow(GUEST) as guest:
            text = yaml.safe_dump(job, sort_keys=False).encode()
            return guest.submit_job(self.pipeline_id, text).job_id

    def ended(self, job_id: str, timeout_s: float = 120.0) -> JobDetail:
        with self.parties.flow(GUEST) as guest:
            ends = ("success", "failed", "rejected", "canceled", "timeout")
            return _until(f"job {job_id} ends", lambda: _job(guest, job_id, *ends), timeout_s)

    def held(self, job_id: str) -> JobDetail:
        """The guest's view once the host holds the proposal for its operator."""
        with self.parties.flow(GUEST) as guest:

            def pending() -> JobDetail | None:
                job = guest.job(job_id)
                return job if HOST in job.pending_approval() else None

            return _until(f"job {job_id} pending approval on {HOST}", pending)

    def host_task_runs(self, job_ids: list[str]) -> list[str]:
        """``task.run`` records of these jobs on the host's own fl.tasks."""
        bootstrap = f"127.0.0.1:{self.parties.stack.party(HOST).kafka_port}"
        found = []
        for job_id in job_ids:
            # in a thread of its own: Playwright's sync API keeps an event loop in this one
            with ThreadPoolExecutor(1) as pool:
                read = pool.submit(asyncio.run, _inbound_envelopes(bootstrap, topics.TASKS, job_id))
                envs = read.result()
            found += [f"{job_id}/{e.task}" for e in envs if e.type == "task.run"]
        return found


@pytest.fixture(scope="module")
def hostile(two_parties: TwoParties) -> Hostile:
    return Hostile(two_parties)


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_mode


def test_hostile_inputs_are_refused_alike_and_nothing_runs_on_the_host(
    hostile: Hostile, two_parties: TwoParties
) -> None:
    host_env = two_parties.stack.party(HOST)
    key = host_env.private_key
    assert key is not None and key.exists()
    with two_parties.flow(HOST) as host:
        table = host.register_table(str(two_parties.data.host_csv), name="host-table")
    before = {p: _stat(p) for p in (key, Path("/etc/passwd"), two_parties.data.host_csv)}
    cases = {
        "the host's private key": str(key),
        "a system file": "/etc/passwd",
        "a missing path": str(host_env.state_dir / "no-such-file.csv"),
        "a missing path beside the granted CSV": str(two_parties.data.host_csv) + ".bak",
        "an ungranted table": f"table:{table.name}",
        "a table that does not exist": "table:no-such-table",
    }
    job_ids = {case: hostile.propose(value) for case, value in cases.items()}
    reasons = {case: hostile.ended(job_id).reason for case, job_id in job_ids.items()}
    assert set(reasons.values()) == {NOT_GRANTED}, reasons
    with two_parties.flow(HOST) as host:
        for case, job_id in job_ids.items():
            job = host.job(job_id)
            assert job.state == "rejected", (case, job.state)
            assert not job.tasks or all(t.state == "waiting" for t in job.tasks), (case, job)
        refused = host.decisions(initiator=GUEST, decision="rejected", limit=100).items
    assert {d.job_id for d in refused} >= set(job_ids.values())
    assert all(d.decided_by == "policy" and d.code == "not_granted" for d in refused)
    assert hostile.host_task_runs(list(job_ids.values())) == []
    assert {p: _stat(p) for p in before} == before  # untouched
    assert not any(j in str(p) for p in host_env.state_dir.rglob("*") for j in job_ids.values())


def test_an_expired_grant_admits_nothing(hostile: Hostile, two_parties: TwoParties) -> None:
    extra = two_parties.root / "expiring.csv"
    extra.write_text(two_parties.data.host_csv.read_text())
    with two_parties.flow(HOST) as host:
        grant = host.grant(GUEST, path=str(extra), expires_ms=int(time.time() * 1000) + 2000)
        _until(
            "the grant lapses", lambda: host.get_grant(grant.grant_id).state == "expired" or None
        )
    job_id = hostile.propose(str(extra))
    assert hostile.ended(job_id).reason == NOT_GRANTED
    assert hostile.host_task_runs([job_id]) == []


def test_a_grant_revoked_while_the_proposal_waits_is_refused_at_approval(
    hostile: Hostile, two_parties: TwoParties
) -> None:
    extra = two_parties.root / "revoked.csv"
    extra.write_text(two_parties.data.host_csv.read_text())
    with two_parties.flow(HOST) as host:
        grant = host.grant(GUEST, path=str(extra))
        job_id = hostile.propose(str(extra))
        hostile.held(job_id)
        host.revoke_grant(grant.grant_id)
        host.approve_job(job_id)
    job = hostile.ended(job_id)
    assert job.state == "rejected"
    assert job.reason == NOT_GRANTED + " (checked again at approval)", job.reason
    assert hostile.host_task_runs([job_id]) == []


def test_approval_runs_the_job_to_success(hostile: Hostile, two_parties: TwoParties) -> None:
    job_id = hostile.propose(str(two_parties.data.host_csv))
    view = hostile.held(job_id)
    assert view.state == "waiting"
    member = next(m for m in view.members if m.party_id == HOST)
    assert (member.answer, member.job_state) == ("pending", "pending_approval")
    with two_parties.flow(HOST) as host:
        assert host.job(job_id).state == "pending_approval"
        assert not hostile.host_task_runs([job_id])
        host.approve_job(job_id)
        job = hostile.ended(job_id, timeout_s=420)
        assert job.state == "success", job.failure_reason()
        rows = host.decisions(job_id=job_id).items
    assert [(d.decision, d.decided_by) for d in reversed(rows)] == [
        ("pending_approval", "policy"),
        ("approved", "local operator (no token)"),
    ]
    assert rows[1].rule == "ACCEPT_POLICY=manual"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium_browser()


def test_the_dashboards_approve_button_runs_the_held_job(
    hostile: Hostile, two_parties: TwoParties, browser: Any
) -> None:
    job_id = hostile.propose(str(two_parties.data.host_csv))
    hostile.held(job_id)
    dashboard = two_parties.stack.party(HOST).base_url("dashboard")
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{dashboard}/jobs/{job_id}")
        page.locator('#job-state [data-state="pending_approval"]').wait_for()
        assert not hostile.host_task_runs([job_id]), "nothing runs before the operator decides"
        page.locator("#approve").get_by_role("button", name="Approve").click()
        page.wait_for_url(f"{dashboard}/jobs/{job_id}*")
        # the job runs on the host and the page follows it there without a reload
        page.locator('#job-state [data-state="success"]').wait_for(timeout=420_000)
    finally:
        context.close()
    job = hostile.ended(job_id, timeout_s=60)
    assert job.state == "success", job.failure_reason()
    assert hostile.host_task_runs([job_id]), "the host's steps were dispatched"
    with two_parties.flow(HOST) as host:
        rows = host.decisions(job_id=job_id).items
    assert [(d.decision, d.decided_by) for d in reversed(rows)] == [
        ("pending_approval", "policy"),
        ("approved", "local operator (no token)"),
    ]


def test_a_rejection_from_the_dashboard_tells_the_initiator_who_and_why(
    hostile: Hostile, two_parties: TwoParties
) -> None:
    job_id = hostile.propose(str(two_parties.data.host_csv))
    hostile.held(job_id)
    dashboard = two_parties.stack.party(HOST).base_url("dashboard")

    def page_with_buttons() -> str | None:
        text = httpx.get(f"{dashboard}/jobs/{job_id}", timeout=10).text
        return text if 'id="reject"' in text and 'id="approve"' in text else None

    assert "ACCEPT_POLICY=manual" in _until(
        "the host's job page offers approval", page_with_buttons
    )
    reject = f"{dashboard}/jobs/{job_id}/reject"
    form = {"reason": "not before the audit", "token": ""}
    foreign = httpx.post(reject, data=form, headers={"Origin": "http://elsewhere.example"})
    assert foreign.status_code == 403
    done = httpx.post(reject, data=form, headers={"Origin": dashboard})
    assert done.status_code == 303, done.text
    job = hostile.ended(job_id)
    assert job.state == "rejected"
    assert job.reason == (
        f"party {HOST} rejected the job: rejected by its operator: not before the audit"
    )
    member = next(m for m in job.members if m.party_id == HOST)
    assert member.answer == "rejected"
    assert hostile.host_task_runs([job_id]) == []
    with two_parties.flow(HOST) as host:
        (last, _) = host.decisions(job_id=job_id).items
    assert (last.decision, last.decided_by) == ("rejected", "local operator (no token)")


def test_no_answer_ends_the_job_at_the_deadline(hostile: Hostile, two_parties: TwoParties) -> None:
    job_id = hostile.propose(str(two_parties.data.host_csv))
    hostile.held(job_id)
    job = hostile.ended(job_id, timeout_s=ACCEPT_TIMEOUT_S + 60)
    assert job.state == "timeout"
    assert HOST in (job.reason or ""), job.reason
    with two_parties.flow(HOST) as host:
        _until("the host's job ends too", lambda: _job(host, job_id, "timeout"))
    assert hostile.host_task_runs([job_id]) == []
