"""End to end: what a party keeps for itself against a hostile initiator (two real parties).

10000 proposes to 20000 (the host of the example, which lists its step images) an output inside
20000's state directory, a role flip with one row per batch, a role flip onto data 20000 granted
as host only, and a runtime image 20000 does not list; 10000's own failure quotes its path.
20000 writes where its own settings say, refuses the others naming its floor (in the same words
whether its file exists or not, with no ``task.run`` on its workers and its files untouched), and
sees 10000's failure only by its code. The other hostile inputs (a key file, a system file, a
missing path, ungranted, expired and revoked grants) are test_grants_and_approval's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import yaml
from e2e_stack import GUEST, HOST, TwoParties
from test_two_parties import _inbound_envelopes

from fedcore import topics
from tessera.example import PIPELINE_YAML
from tessera.sdk import ApiError, JobDetail, Tessera

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 420.0
IMAGE = "tessera/runtime:dev"  # the example job's runtime-image: the one the host lists


@pytest.fixture(scope="module")
def own_env() -> Mapping[str, Mapping[str, str]]:
    return {HOST: {"STEP_IMAGES": IMAGE}}


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


def _flipped(two_parties: TwoParties, host_input: str, **common: object) -> bytes:
    """The example job with 20000 as the label-holding guest (10000 as host) on ``host_input``."""
    job = yaml.safe_load(two_parties.job_text())
    args = job["parties-args"]
    args[int(GUEST)]["input"] = args[int(HOST)]["input"]
    args[int(HOST)]["input"] = host_input
    job["parties"] = [f"{GUEST}=host", f"{HOST}=guest"]  # 20000's labels
    job["common-args"].update(common)
    return yaml.safe_dump(job).encode()


def _host_task_runs(two_parties: TwoParties, job_ids: list[str]) -> list[str]:
    """``task.run`` records of these jobs on the host's own fl.tasks."""
    bootstrap = f"127.0.0.1:{two_parties.stack.party(HOST).kafka_port}"
    found = []
    for job_id in job_ids:
        envs = asyncio.run(_inbound_envelopes(bootstrap, topics.TASKS, job_id))
        found += [f"{job_id}/{e.task}" for e in envs if e.type == "task.run"]
    return found


def _refused_on_the_host(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str], jobs: dict[str, bytes]
) -> dict[str, str]:
    """Submit each job; every one ends rejected by the host, which ran nothing: their reasons."""
    guest, host, pipeline_id = clients
    ids = {case: guest.submit_job(pipeline_id, text).job_id for case, text in jobs.items()}
    reasons = {}
    for case, job_id in ids.items():
        refused = _wait(guest, job_id, 120.0)
        assert refused.state == "rejected", (case, refused.failure_reason())
        reasons[case] = refused.reason or ""
        theirs = _wait(host, job_id, 10.0)
        assert theirs.state == "rejected", case
        assert all(t.state == "waiting" for t in theirs.tasks), "no step ran on the refusing party"
        (decision,) = host.decisions(job_id=job_id).items
        assert (decision.decision, decision.decided_by) == ("rejected", "policy"), case
    assert _host_task_runs(two_parties, list(ids.values())) == []
    return reasons


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_mode


def test_the_role_flip_with_one_row_batches_is_refused_naming_the_floor(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str]
) -> None:
    granted = two_parties.data.host_csv
    before = _stat(granted)
    reasons = _refused_on_the_host(
        two_parties,
        clients,
        {
            "granted data": _flipped(two_parties, str(granted), **{"batch-size": 1}),
            "a missing path": _flipped(two_parties, f"{granted}.bak", **{"batch-size": 1}),
        },
    )
    assert len(set(reasons.values())) == 1, "the same words whether the file exists or not"
    reason = reasons["granted data"]
    assert reason.startswith(f"party {HOST} rejected the job: parties-args.{HOST}: step 'train'")
    assert "floor min-batch-rows: a mini-batch of 1 row(s)" in reason
    assert "breast" not in reason, "the refusal names no file of 20000's"
    assert _stat(granted) == before


def test_data_granted_as_host_does_not_hold_the_labels(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str]
) -> None:
    (reason,) = _refused_on_the_host(
        two_parties, clients, {"flip": _flipped(two_parties, str(two_parties.data.host_csv))}
    ).values()
    assert f"granted to {GUEST} as host only, not as guest (floor guest-data" in reason


def test_a_runtime_image_the_host_does_not_list_is_refused_naming_the_floor(
    two_parties: TwoParties, clients: tuple[Tessera, Tessera, str]
) -> None:
    reasons = _refused_on_the_host(
        two_parties,
        clients,
        {
            "granted data": _job(two_parties, HOST, **{"runtime-image": "evil/miner:1"}),
            "a missing path": _job(
                two_parties,
                HOST,
                input=f"{two_parties.data.host_csv}.bak",
                **{"runtime-image": "evil/miner:1"},
            ),
        },
    )
    assert len(set(reasons.values())) == 1, reasons
    assert (
        "floor runtime-image: runtime-image 'evil/miner:1' is not one of this party's images "
        f"({IMAGE})"
    ) in reasons["granted data"]


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
