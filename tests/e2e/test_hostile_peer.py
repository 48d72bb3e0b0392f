"""A hostile peer against the real two-party stack: the host (20000), signing with its real key,
posts forged and malformed batches to the guest's bridge. Each is refused with its own 4xx (a
batch is refused as a whole, so nothing of it is produced), every service stays healthy, the
guest's bridge logs at most one short line per refused request, and a legitimate job submitted
right after succeeds.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from e2e_stack import GUEST, HOST, TwoParties

from fedcore import codec, topics
from fedcore.envelope import Envelope
from federation_bridge import signing
from federation_bridge.wire import PARTY_HEADER, PATH, SIGNATURE_HEADER, Batch, WireRecord
from tessera.example import PIPELINE_YAML
from tessera.sdk import JobDetail, Tessera

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 420.0
MIB = 1024 * 1024
LOG_LINE_BYTES = 1100  # a bounded message (1 KB) and the log format's timestamp, level and name


@dataclass(frozen=True)
class Peer:
    """The host's key and the guest's bridge, as the host's bridge would post to it."""

    url: str
    key: signing.Ed25519PrivateKey

    def post(self, body: bytes, *, party: str | None = HOST, sign: bool = True) -> httpx.Response:
        headers = {}
        if party is not None:
            headers[PARTY_HEADER] = party
        if sign:
            headers[SIGNATURE_HEADER] = signing.sign(self.key, body)
        return httpx.post(self.url + PATH, content=body, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def peer(two_parties: TwoParties) -> Peer:
    key_file = two_parties.stack.party(HOST).private_key
    assert key_file is not None
    url = two_parties.stack.party(GUEST).base_url("federation_bridge")
    return Peer(url, signing.load_private_key(key_file))


def _envelope(**changes: str) -> Envelope:
    return Envelope(
        type="job.stop", job_id=uuid.uuid4().hex, src=HOST, dst=GUEST, body={"reason": "x"}
    ).model_copy(update=changes)


def _batch(
    env: Envelope,
    *,
    topic: str = topics.IN_CTL,
    headers: list[tuple[str, bytes]] | None = None,
    sent_ms: int | None = None,
) -> bytes:
    record = WireRecord(
        topic=topic,
        key=env.job_id.encode(),
        value=env.to_bytes(),
        headers=env.headers() if headers is None else headers,
    )
    return Batch(
        src=HOST,
        dst=GUEST,
        batch_id=uuid.uuid4().hex,
        sent_ms=int(time.time() * 1000) if sent_ms is None else sent_ms,
        records=[record],
    ).encode()


def _with(env: Envelope, name: str, value: bytes) -> list[tuple[str, bytes]]:
    return [(k, value if k == name else v) for k, v in env.headers()]


def _streamed_300_mib(peer: Peer) -> tuple[int | None, str]:
    """Declare 300 MiB and stream zeros (nothing of it is held here); the status, or the transport
    error when the bridge answered and closed before the client finished sending."""
    size = 300 * MIB

    def chunks() -> Iterator[bytes]:
        block = bytes(MIB)
        for _ in range(size // MIB):
            yield block

    headers = {
        PARTY_HEADER: HOST,
        SIGNATURE_HEADER: signing.sign(peer.key, b"unused"),
        "Content-Length": str(size),
    }
    try:
        resp = httpx.post(peer.url + PATH, content=chunks(), headers=headers, timeout=60)
    except httpx.TransportError as exc:
        return None, type(exc).__name__
    return resp.status_code, resp.json()["error"]


def _rejected(two_parties: TwoParties) -> dict[str, int]:
    url = two_parties.stack.party(GUEST).health_url("federation_bridge")
    counts: dict[str, int] = httpx.get(url, timeout=10).json()["receiver"]["rejected"]
    return counts


def test_a_hostile_peer_is_refused_and_a_job_still_succeeds_after(
    two_parties: TwoParties, peer: Peer, tmp_path: Path
) -> None:
    stranger = signing.load_private_key(signing.generate_keypair(tmp_path / "stranger")[0])
    log = two_parties.processes(GUEST).services["federation_bridge"].log_file
    log_before = log.stat().st_size
    day_ms = 86_400_000
    now_ms = int(time.time() * 1000)
    fields = {"src": HOST, "dst": GUEST, "batch_id": "b", "sent_ms": now_ms}
    env = _envelope()
    cases: dict[str, tuple[httpx.Response, int, str]] = {
        "no signature": (peer.post(_batch(env), sign=False), 401, "unsigned"),
        "a stranger's key": (
            Peer(peer.url, stranger).post(_batch(_envelope())),
            401,
            "bad_signature",
        ),
        "an unknown party": (peer.post(_batch(_envelope()), party="30000"), 401, "unknown_party"),
        "a record claiming another src": (
            peer.post(_batch(env, headers=_with(env, "src", b"30000"))),
            403,
            "src_mismatch",
        ),
        "a body claiming another src": (
            peer.post(_batch(_envelope(src="30000"), headers=env.headers())),
            403,
            "body_mismatch",
        ),
        "a write into fl.tasks": (
            peer.post(_batch(_envelope(), topic=topics.TASKS)),
            403,
            "topic",
        ),
        "a write into fl.status": (
            peer.post(_batch(_envelope(), topic=topics.STATUS)),
            403,
            "topic",
        ),
        "another dst": (peer.post(_batch(_envelope(dst="30000"))), 403, "dst_mismatch"),
        "a 30-day-old batch": (
            peer.post(_batch(_envelope(), sent_ms=now_ms - 30 * day_ms)),
            403,
            "stale",
        ),
        "garbage": (peer.post(os.urandom(4096)), 400, "malformed"),
        "a chunk that never completes": (
            peer.post(_batch(env, headers=[*env.headers(), ("chunk", b"0/1000000")])),
            400,
            "bad_chunk",
        ),
        "five million empty records": (
            peer.post(codec.packb({**fields, "records": [[]] * 5_000_000})),
            400,
            "malformed",
        ),
    }
    for name, (resp, status, code) in cases.items():
        assert (resp.status_code, resp.json()["error"]) == (status, code), (name, resp.text[:300])
        assert len(resp.content) < 1024, name
    too_large_before = _rejected(two_parties).get("too_large", 0)
    answer, what = _streamed_300_mib(peer)
    assert answer in (413, None), what
    assert answer is None or what == "too_large"
    assert _rejected(two_parties)["too_large"] == too_large_before + 1

    # one short line per refused request; the sender's consumer kept its group meanwhile
    grown = log.read_bytes()[log_before:].splitlines()
    refusals = [line for line in grown if b"rejected a request" in line]
    assert len(refusals) == len(cases) + 1, refusals
    assert all(len(line) <= LOG_LINE_BYTES for line in grown), max(grown, key=len)
    assert not [line for line in grown if b"expired" in line or b"UnknownMember" in line]
    unhealthy = [s for s in two_parties.stack.status() if not s.healthy]
    assert not unhealthy, unhealthy

    with two_parties.flow(GUEST) as guest:
        pipeline_id = guest.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        job_id = guest.submit_job(pipeline_id, two_parties.job_text().encode()).job_id
        job = _wait(guest, job_id)
    assert job.state == "success", f"{job.state}: {job.failure_reason()}"


def _wait(flow: Tessera, job_id: str) -> JobDetail:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = flow.job(job_id)
        if job.finished or time.monotonic() > deadline:
            return job
        time.sleep(0.5)
