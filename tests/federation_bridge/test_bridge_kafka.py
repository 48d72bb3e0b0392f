"""Two bridges as real processes (``python -m federation_bridge``) on the two real brokers.

Party 10000's bridge runs on broker A, party 20000's on broker B; keys come from ``keygen``.
Records are checked on B's topics by tailing them from before each test's first publish.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import numpy as np
import pytest
import pytest_asyncio
from bridge_procs import A, B, BridgeProcess, Tail, fed, free_port, has_id, keygen, stopped_after

from fedcore import codec, topics
from fedcore.bus import Bus, ensure_topics
from fedcore.envelope import Envelope
from federation_bridge import signing
from federation_bridge.wire import PARTY_HEADER, PATH, SIGNATURE_HEADER, Batch, WireRecord

pytestmark = pytest.mark.kafka

# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key pairs of 10000, 20000, 11000, 21000 written by ``python -m federation_bridge keygen``."""
    return keygen(tmp_path_factory.mktemp("keys"), A, B, "11000", "21000")


@pytest.fixture(scope="module")
def bridges(
    kafka_pair: Any, keys: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BridgeProcess, BridgeProcess]]:
    broker_a, broker_b = kafka_pair
    root = tmp_path_factory.mktemp("bridges")
    port_a, port_b = free_port(), free_port()
    a = BridgeProcess(root, A, broker_a.bootstrap, port_a, {B: port_b}, keys)
    b = BridgeProcess(root, B, broker_b.bootstrap, port_b, {A: port_a}, keys)
    with stopped_after(a, b):
        b.start()
        a.start()
        yield a, b


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus_a(kafka_pair: Any) -> AsyncIterator[Bus]:
    async with Bus(kafka_pair[0].bootstrap, client_id="test-bridge-a") as bus:
        yield bus


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bus_b(kafka_pair: Any) -> AsyncIterator[Bus]:
    async with Bus(kafka_pair[1].bootstrap, client_id="test-bridge-b") as bus:
        yield bus


# -- the bridge end to end ------------------------------------------------------------------------


def test_keygen_writes_a_private_pem_only_its_owner_reads(keys: Path) -> None:
    private, public = keys / A / "private.pem", keys / A / "public.pem"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    signing.load_private_key(private)


@pytest.mark.parametrize(
    ("out", "inbound"), [(topics.OUT_FED, topics.IN_FED), (topics.OUT_CTL, topics.IN_CTL)]
)
async def test_a_record_crosses_once_with_identical_bytes_and_headers(
    bridges: Any, bus_a: Bus, kafka_pair: Any, out: str, inbound: str
) -> None:
    env = fed(A, B, value=[1, 2, 3])
    async with Tail(kafka_pair[1].bootstrap, inbound) as tail:
        await bus_a.publish(out, env)
        got = await tail.collect(has_id(env.id), count=1)
    assert len(got) == 1
    assert got[0].value == env.to_bytes()
    assert got[0].key == env.job_id.encode()
    assert list(got[0].headers) == env.headers()


async def test_a_chunked_envelope_is_reassembled_on_the_peer(
    bridges: Any, bus_a: Bus, bus_b: Bus, kafka_pair: Any
) -> None:
    payload = np.arange(300_000, dtype=np.float64)  # 2.4 MB: three chunk records
    env = fed(A, B, value=payload)
    since_ms = int(time.time() * 1000) - 1000
    async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
        await bus_a.publish(topics.OUT_FED, env)
        chunks = await tail.collect(has_id(env.id), count=3)
    assert sorted(dict(r.headers)["chunk"] for r in chunks) == [b"0/3", b"1/3", b"2/3"]
    async with bus_b.subscribe([topics.IN_FED], group_id=None, start_time_ms=since_ms) as sub:
        async for got in sub:
            if got.id == env.id:
                break
    np.testing.assert_array_equal(got.body["value"], payload)
    assert got.model_dump(exclude={"body"}) == env.model_dump(exclude={"body"})


async def test_an_unroutable_record_is_dead_lettered_and_does_not_block(
    bridges: Any, bus_a: Bus, kafka_pair: Any
) -> None:
    lost, after = fed(A, "99999"), fed(A, B)
    async with (
        Tail(kafka_pair[0].bootstrap, topics.DEAD) as dead,
        Tail(kafka_pair[1].bootstrap, topics.IN_FED) as inbound,
    ):
        await bus_a.publish(topics.OUT_FED, lost)
        await bus_a.publish(topics.OUT_FED, after)
        assert len(await inbound.collect(has_id(after.id), count=1, settle_s=0)) == 1
        [record] = await dead.collect(has_id(lost.id), count=1, settle_s=0)
    assert record.value == lost.to_bytes()
    marks = dict(record.headers)
    assert b"not a configured peer" in marks["dead_reason"]
    assert marks["dead_service"] == b"federation_bridge"
    assert marks["dead_source"].startswith(f"{topics.OUT_FED}[".encode())


# -- the receiver's checks, posting directly -------------------------------------------------------


async def signed_post(
    url: str, party: str | None, key_file: Path, batch: Batch, *, tamper: bool = False
) -> httpx.Response:
    body = batch.encode()
    sig = signing.sign(signing.load_private_key(key_file), body)
    if tamper:
        body = body.replace(batch.batch_id.encode(), b"x" * len(batch.batch_id))
    headers = {PARTY_HEADER: party, SIGNATURE_HEADER: sig} if party else {}
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url + PATH, content=body, headers=headers)


def batch_of(
    env: Envelope,
    *,
    src: str = A,
    dst: str = B,
    topic: str = topics.IN_FED,
    headers: list[tuple[str, bytes]] | None = None,
) -> Batch:
    record = WireRecord(
        topic=topic,
        key=env.job_id.encode(),
        value=env.to_bytes(),
        headers=env.headers() if headers is None else headers,
    )
    return Batch(
        src=src,
        dst=dst,
        batch_id=uuid.uuid4().hex,
        sent_ms=int(time.time() * 1000),
        records=[record],
    )


async def test_the_receiver_refuses_forged_unknown_and_misattributed_batches(
    bridges: Any, keys: Path, kafka_pair: Any, tmp_path: Path
) -> None:
    _, b = bridges
    stranger_key, _ = signing.generate_keypair(tmp_path / "stranger")
    envs = [fed(A, B) for _ in range(6)]
    foreign = fed("30000", B)
    key_a = keys / A / "private.pem"
    cases = [
        # a signature by a key that is not 10000's
        (await signed_post(b.url, A, stranger_key, batch_of(envs[0])), 401, "bad_signature"),
        # the body changed after signing
        (await signed_post(b.url, A, key_a, batch_of(envs[1]), tamper=True), 401, "bad_signature"),
        # a party this bridge does not know
        (
            await signed_post(b.url, "30000", stranger_key, batch_of(foreign, src="30000")),
            401,
            "unknown_party",
        ),
        # 10000 signs a record whose src header says 30000
        (await signed_post(b.url, A, key_a, batch_of(foreign)), 403, "src_mismatch"),
        # 10000 signs a batch that claims to come from 11000
        (await signed_post(b.url, A, key_a, batch_of(envs[2], src="11000")), 403, "src_mismatch"),
        # a record for another party
        (await signed_post(b.url, A, key_a, batch_of(fed(A, "21000"))), 403, "dst_mismatch"),
        # a topic that is not inbound
        (await signed_post(b.url, A, key_a, batch_of(envs[3], topic=topics.TASKS)), 403, "topic"),
        # a batch older than the receiver's de-duplication window (7 days)
        (
            await signed_post(
                b.url, A, key_a, batch_of(envs[5]).model_copy(update={"sent_ms": 86_400_000})
            ),
            403,
            "stale",
        ),
        # no signature headers at all
        (await signed_post(b.url, None, key_a, batch_of(envs[4])), 401, "unsigned"),
    ]
    for resp, status, code in cases:
        assert (resp.status_code, resp.json()["error"]) == (status, code), resp.text
        assert resp.json()["reason"]
    ids = {e.id.encode() for e in [*envs, foreign]}
    async with Tail(kafka_pair[1].bootstrap, *topics.ALL) as tail:
        leaked = await tail.collect(lambda r: dict(r.headers or ()).get("id") in ids, count=0)
    assert leaked == []
    rejected = (await b.health())["receiver"]["rejected"]
    assert rejected["bad_signature"] >= 2 and rejected["src_mismatch"] >= 2


async def post_signed_body(url: str, key_file: Path, body: bytes) -> httpx.Response:
    sig = signing.sign(signing.load_private_key(key_file), body)
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            url + PATH, content=body, headers={PARTY_HEADER: A, SIGNATURE_HEADER: sig}
        )


async def test_a_batch_of_five_million_empty_records_is_refused_at_once_in_one_log_line(
    bridges: Any, keys: Path, kafka_pair: Any
) -> None:
    _, b = bridges
    now_ms = int(time.time() * 1000)
    batch = {"src": A, "dst": B, "batch_id": uuid.uuid4().hex, "sent_ms": now_ms}
    # 5 MB of msgpack, each record an empty array: pydantic would report each one
    body = codec.packb({**batch, "records": [[]] * 5_000_000})
    log_before = b.log.stat().st_size
    resp = await post_signed_body(b.url, keys / A / "private.pem", body)
    assert (resp.status_code, resp.json()["error"]) == (400, "malformed"), resp.text[:500]
    assert "10000" in resp.json()["reason"] and len(resp.text) < 1024
    grown = b.log.read_bytes()[log_before:]
    assert grown.count(b"\n") == 1 and len(grown) <= 1100, grown[:2000]
    assert (await b.health())["receiver"]["rejected"]["malformed"] >= 1
    # the bridge still takes a legitimate batch from the same peer
    env = fed(A, B)
    async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
        ok = await signed_post(b.url, A, keys / A / "private.pem", batch_of(env))
        got = await tail.collect(has_id(env.id), count=1, settle_s=0)
    assert ok.json()["produced"] == 1 and len(got) == 1


async def _until_metric(bridge: BridgeProcess, name: str, value: float) -> None:
    for _ in range(300):  # the bridge is another process: poll its /metrics
        if (await bridge.metrics()).get(name) == value:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never became {value}:\n{bridge.tail()}")


async def _answer_to_headers(bridge: BridgeProcess, headers: dict[str, str]) -> int:
    """The status the bridge answers to a request's head alone (no body is ever sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST {PATH} HTTP/1.1\r\nHost: bridge\r\n{head}\r\n".encode())
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 30)
    writer.close()
    return int(status_line.split()[1])


async def test_a_peer_over_its_share_is_told_to_retry_and_bodies_are_read_only_when_declared(
    bridges: Any, keys: Path, kafka_pair: Any
) -> None:
    _, b = bridges
    key = signing.load_private_key(keys / A / "private.pem")
    headers = {PARTY_HEADER: A, SIGNATURE_HEADER: signing.sign(key, b"unused")}
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"x"
        await release.wait()  # then ends short of what it declared

    async def hold(client: httpx.AsyncClient) -> None:
        declared = {**headers, "Content-Length": "64000000"}  # the most one body may be
        # the client gives up on a body shorter than it declared (h11 says so, not httpx)
        with contextlib.suppress(httpx.HTTPError, h11.LocalProtocolError):
            await client.post(b.url + PATH, content=slow_body(), headers=declared)

    gauge = f'tessera_bridge_peer_bytes_in_progress{{peer="{A}"}}'
    # a body over the limit is refused on its declared size, one of undeclared size (chunked)
    # is not taken at all: both answered before a byte of the body was sent
    assert await _answer_to_headers(b, {**headers, "Content-Length": str(300 * 2**20)}) == 413
    assert await _answer_to_headers(b, {**headers, "Transfer-Encoding": "chunked"}) == 411
    async with httpx.AsyncClient(timeout=30) as client:
        # two bodies of 64 MB in progress: A's share of bytes (128 MB) is taken
        holders = [asyncio.create_task(hold(client)) for _ in range(2)]
        await _until_metric(b, gauge, 128_000_000)
        busy = await signed_post(b.url, A, keys / A / "private.pem", batch_of(fed(A, B)))
        assert (busy.status_code, busy.json()["error"]) == (429, "too_many_bytes")
        assert busy.headers["Retry-After"] == "1"
        release.set()
        await asyncio.gather(*holders)
    await _until_metric(b, gauge, 0)
    env = fed(A, B)
    async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
        ok = await signed_post(b.url, A, keys / A / "private.pem", batch_of(env))
        assert ok.status_code == 200, ok.text
        assert len(await tail.collect(has_id(env.id), count=1, settle_s=0)) == 1


async def test_a_replayed_batch_is_produced_once(bridges: Any, keys: Path, kafka_pair: Any) -> None:
    _, b = bridges
    env = fed(A, B)
    batch = batch_of(env)
    async with Tail(kafka_pair[1].bootstrap, topics.IN_FED) as tail:
        first = await signed_post(b.url, A, keys / A / "private.pem", batch)
        again = await signed_post(b.url, A, keys / A / "private.pem", batch)
        # the same record in a new batch, as a sender retrying after a lost answer would send it
        anew = await signed_post(b.url, A, keys / A / "private.pem", batch_of(env))
        got = await tail.collect(has_id(env.id), count=1)
    assert first.json() == {"batch_id": batch.batch_id, "produced": 1, "duplicates": 0}
    assert again.json() == {"batch_id": batch.batch_id, "produced": 0, "duplicates": 1}
    assert anew.status_code == 200 and anew.json()["duplicates"] == 1
    assert len(got) == 1


# -- a peer that is down at first ------------------------------------------------------------------


async def test_records_wait_in_kafka_for_a_peer_that_is_down_and_arrive_once_in_order(
    kafka_pair: Any, keys: Path, bus_a: Bus, tmp_path: Path
) -> None:
    broker_a, broker_b = kafka_pair
    port_a, port_b = free_port(), free_port()
    # tiny buffers and batches, so that most records must wait in Kafka (the consumer pauses)
    small = {"BRIDGE_BUFFER_MAX_RECORDS": "2", "BRIDGE_BATCH_MAX_RECORDS": "2"}
    a = BridgeProcess(tmp_path, "11000", broker_a.bootstrap, port_a, {"21000": port_b}, keys, small)
    b = BridgeProcess(tmp_path, "21000", broker_b.bootstrap, port_b, {"11000": port_a}, keys)
    await ensure_topics(broker_b.bootstrap)
    job = uuid.uuid4().hex
    envs = [
        Envelope(type="fed", job_id=job, task="t", src="11000", dst="21000", body={"i": i})
        for i in range(12)
    ]
    ids = {e.id.encode() for e in envs}
    with stopped_after(a, b):
        await asyncio.to_thread(a.start)
        async with Tail(broker_b.bootstrap, topics.IN_FED) as tail:
            for env in envs:
                await bus_a.publish(topics.OUT_FED, env)
            deadline = time.monotonic() + 20
            while (sender := (await a.health())["sender"])["peers"]["21000"]["failed_attempts"] < 3:
                assert time.monotonic() < deadline, a.tail()
                await asyncio.sleep(0.2)
            # read ahead: a full buffer (batches in delivery included), one record waiting for room
            assert sender["in_flight"] <= 2 + 1
            await asyncio.to_thread(b.start)
            got = await tail.collect(lambda r: dict(r.headers or ()).get("id") in ids, count=12)
        assert [r.value for r in got] == [e.to_bytes() for e in envs]
        assert (await a.health())["sender"]["in_flight"] == 0
