"""End to end: what a party keeps for itself against a hostile initiator (two real parties).

10000 proposes to 20000 (the host of the example) an output inside 20000's state directory and a
role flip with one row per batch; 10000's own failure quotes its path. 20000 writes where its own
settings say, refuses the flip naming its floor, and sees 10000's failure only by its code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties

from tessera.example import PIPELINE_YAML
from tessera.sdk import ApiError, JobDetail, Tessera

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 420.0


def _wait(flow: Tessera, job_id: str, timeout_s: float) -> JobDetail:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            job = flow.job(job_id)
        except ApiError as exc:
            if exc.status_code != 404 or time.monotonic() > deadline:
                raise
        else:
            if job.finished or time.monotonic() > deadline:
                return job
        time.sleep(0.5)


@pytest.fixture(scope="module")
def clients(two_parties: TwoParties) -> Iterator[tuple[Tessera, Tessera, str]]:
    with two_parties.flow(GUEST) as guest, two_parties.flow(HOST) as host:
        pipeline_id = guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        yield guest, host, pipeline_id


def _job(two_parties: TwoParties, party: str, **args: object) -> bytes:
    """The example job.yaml with ``args`` put into ``party``'s parties-args."""
    job = yaml.safe_load(two_parties.job_text())
    job["parties-args"][int(party)].update(args)
    return yaml.safe_dump(job).encode()


def test_an_output_in_the_hosts_state_dir_goes_to_the_hosts_own_root(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str]
) -> None:
    guest, host, pipeline_id = clients
    state_dir = two_parties.stack.party(HOST).state_dir.resolve()
    target = state_dir / "planted"
    job_id = guest.submit_job(pipeline_id, _job(two_parties, HOST, output=str(target))).job_id
    done = _wait(guest, job_id, JOB_TIMEOUT_S)
    assert done.state == "success", done.failure_reason()  # the seed job still runs
    seen = _wait(host, job_id, 60.0)
    assert seen.output is not None
    assert seen.output.chosen_by == "settings" and seen.output.requested == str(target)
    assert "not an absolute path outside this party's state directory" in seen.output.reason
    assert Path(seen.output.root).resolve() == state_dir / "output"
    assert (state_dir / "output" / job_id / HOST / "train" / "model").is_file()
    assert not target.exists(), "nothing was written where the initiator said"
    # the initiator's own output is its own business
    mine = _wait(guest, job_id, 1.0).output
    assert mine is not None and mine.chosen_by == "job.yaml"


def test_the_role_flip_with_one_row_batches_is_refused_naming_the_floor(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str]
) -> None:
    guest, host, pipeline_id = clients
    job = yaml.safe_load(two_parties.job_text())
    args = job["parties-args"]
    args[int(GUEST)]["input"], args[int(HOST)]["input"] = (
        args[int(HOST)]["input"],
        args[int(GUEST)]["input"],
    )
    job["parties"] = [f"{GUEST}=host", f"{HOST}=guest"]  # 20000's labels
    job["common-args"]["batch-size"] = 1
    job_id = guest.submit_job(pipeline_id, yaml.safe_dump(job).encode()).job_id
    refused = _wait(guest, job_id, 120.0)
    assert refused.state == "rejected", refused.failure_reason()
    reason = refused.reason or ""
    assert f"party {HOST} rejected the job: security_floor" in reason
    assert "floor min-batch-rows" in reason and "floor guest-data" in reason
    assert "breast" not in reason, "the refusal names no file of 20000's"
    theirs = _wait(host, job_id, 10.0)
    assert theirs.state == "rejected"
    assert all(t.state == "waiting" for t in theirs.tasks), "no step ran on the refusing party"


def test_a_failure_reaches_the_other_party_as_its_code_only(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str]
) -> None:
    guest, host, pipeline_id = clients
    # 10000's input is a directory: its intersect step fails with an error that quotes the path
    folder = two_parties.root / "secret-folder-of-10000"
    folder.mkdir()
    job_id = guest.submit_job(pipeline_id, _job(two_parties, GUEST, input=str(folder))).job_id
    mine = _wait(guest, job_id, JOB_TIMEOUT_S)
    assert mine.state == "failed"
    own = next(t for t in mine.tasks if t.party_id == GUEST and t.state == "failed")
    assert str(folder) in (own.reason or ""), "the full detail stays with 10000"
    assert own.code == "bad_arguments"
    theirs = _wait(host, job_id, 60.0)
    assert theirs.state == "failed"
    told = [theirs.reason or ""] + [
        t.reason or "" for t in theirs.tasks if t.party_id == GUEST and t.reason
    ]
    assert any("bad_arguments: " in r for r in told), told
    assert not any("secret-folder" in r for r in told), told
