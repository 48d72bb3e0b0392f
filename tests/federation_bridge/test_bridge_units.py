"""The bridge's pure parts without Kafka: offsets, buffering, signing, the wire format, dedup."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore import codec
from fedcore.envelope import Envelope
from fedcore.settings import SettingsError
from federation_bridge import diag, signing, tls
from federation_bridge.admission import PeerAdmission
from federation_bridge.buffer import PeerBuffer
from federation_bridge.dedup import DedupStore
from federation_bridge.offsets import OffsetTracker
from federation_bridge.options import BridgeOptions
from federation_bridge.receiver import Rejected
from federation_bridge.wire import (
    MAX_WIRE_RECORD_BYTES,
    SIGNATURE_HEADER,
    Batch,
    WireError,
    WireRecord,
    record_problem,
)

TP = TopicPartition("fl.out.fed", 0)


def test_commit_never_passes_an_undelivered_offset() -> None:
    tracker = OffsetTracker()
    tickets = [tracker.track(TP, offset) for offset in (5, 6, 7)]
    tracker.done(tickets[1])  # delivered out of order (another peer)
    assert tracker.to_commit() == {TP: 5}
    tracker.committed({TP: 5})
    tracker.done(tickets[0])
    assert tracker.to_commit() == {TP: 7}
    tracker.done(tickets[2])
    assert tracker.to_commit() == {TP: 8}
    tracker.committed({TP: 8})
    assert tracker.to_commit() == {}


def test_tickets_of_a_forgotten_partition_are_ignored() -> None:
    tracker = OffsetTracker()
    old = tracker.track(TP, 3)
    tracker.forget({TP})
    tracker.track(TP, 3)
    tracker.done(old)
    assert tracker.to_commit() == {TP: 3}


class _Item(bytes):
    pass


async def test_buffer_is_bounded_and_batches_by_count_and_bytes() -> None:
    buf: PeerBuffer[_Item] = PeerBuffer(max_records=3, max_bytes=100)
    assert buf.try_put(_Item(b"x" * 200))  # an empty buffer takes any one record
    assert not buf.try_put(_Item(b"y"))
    taken = await buf.take(max_records=10, max_bytes=10)
    assert taken == [b"x" * 200]
    assert not buf.try_put(_Item(b"y"))  # taken records count until delivered
    buf.release(taken)
    for _ in range(3):
        assert buf.try_put(_Item(b"z" * 10))
    assert not buf.try_put(_Item(b"z"))
    first = await buf.take(max_records=2, max_bytes=1000)
    assert (len(first), len(buf), buf.taken) == (2, 1, 2)
    assert not buf.try_put(_Item(b"z"))
    buf.release(first)
    assert len(await buf.take(max_records=2, max_bytes=1000)) == 1


async def test_waiting_for_room_cannot_miss_a_release_that_happened_first() -> None:
    buf: PeerBuffer[_Item] = PeerBuffer(max_records=1, max_bytes=100)
    assert buf.try_put(_Item(b"a"))
    assert not buf.try_put(_Item(b"b"))
    # the sender took and delivered before we began to wait
    buf.release(await buf.take(max_records=1, max_bytes=100))
    await asyncio.wait_for(buf.wait_until_fits(1), timeout=1)
    assert buf.try_put(_Item(b"b"))


def test_keygen_signs_and_verifies(tmp_path: Path) -> None:
    private, public = signing.generate_keypair(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key, pub = signing.load_private_key(private), signing.load_public_key(public)
    sig = signing.sign(key, b"body")
    assert signing.verify(pub, b"body", sig)
    assert not signing.verify(pub, b"body!", sig)
    assert not signing.verify(pub, b"body", "not base64 at all ***")
    with pytest.raises(FileExistsError):
        signing.generate_keypair(tmp_path / "k")
    with pytest.raises(signing.KeyFileError):
        signing.load_public_key(private)


def test_batch_round_trips_bytes_and_header_order() -> None:
    record = WireRecord(
        topic="fl.in.fed",
        key=None,
        value=b"\x00\xff",
        headers=[("id", b"1"), ("chunk", b"0/2"), ("id", b"dup")],
    )
    batch = Batch(src="1", dst="2", batch_id="b", sent_ms=1, records=[record])
    assert Batch.decode(batch.encode(), max_records=1) == batch
    with pytest.raises(WireError):
        Batch.decode(b"\xc1", max_records=1)
    with pytest.raises(WireError):
        Batch.decode(batch.encode()[:-3], max_records=1)


def _raw_batch(**fields: object) -> bytes:
    base = {"src": "1", "dst": "2", "batch_id": "b", "sent_ms": 1, "records": []}
    return codec.packb({**base, **fields})


def test_a_batch_is_bounded_before_it_is_validated() -> None:
    # five million empty records: refused while reading the array's header, in one short text
    with pytest.raises(WireError, match="5000000 exceeds max_array_len") as refused:
        Batch.decode(_raw_batch(records=[[]] * 5_000_000), max_records=10_000)
    assert len(str(refused.value)) < 200
    # one more record than allowed, a value over a record, a long string, an extension type
    record = {"topic": "fl.in.fed", "key": None, "value": b"v", "headers": []}
    for body in (
        _raw_batch(records=[record] * 11),
        _raw_batch(records=[{**record, "value": b"x" * (MAX_WIRE_RECORD_BYTES + 1)}]),
        _raw_batch(batch_id="b" * 1000),
        _raw_batch(sent_ms=2**70),
        _raw_batch(records=[{**record, "headers": [["h", b"v"]] * 17}]),
    ):
        with pytest.raises(WireError) as exc:
            Batch.decode(body, max_records=10)
        assert len(str(exc.value)) < 300, str(exc.value)
    # many invalid records: the error names the first and counts the others, without the input
    with pytest.raises(WireError) as many:
        Batch.decode(_raw_batch(records=[{"topic": 1}] * 500), max_records=1000)
    assert "records.0" in str(many.value) and "more" in str(many.value)
    assert len(str(many.value)) < 300


def _record(env: Envelope, **changes: object) -> WireRecord:
    record = WireRecord(topic="fl.in.ctl", key=b"k", value=env.to_bytes(), headers=env.headers())
    return record.model_copy(update=changes)


def test_a_record_crosses_only_if_its_envelope_and_headers_name_the_signer() -> None:
    env = Envelope(type="job.stop", job_id="ab" * 16, src="10000", dst="20000")
    assert record_problem(_record(env), src="10000", dst="20000") is None
    cases = {
        "src_mismatch": _record(env.model_copy(update={"src": "30000"})),
        "dst_mismatch": _record(env.model_copy(update={"dst": "30000"})),
        # headers say 10000, the body another party: what a consumer trusting the body would see
        "body_mismatch": _record(env, value=env.model_copy(update={"src": "30000"}).to_bytes()),
        "not_an_envelope": _record(env, value=b"\x93\x01\x02\x03"),
        "no_id": _record(env, headers=[h for h in env.headers() if h[0] != "id"]),
        "bad_chunk": _record(env, headers=[*env.headers(), ("chunk", b"0/1000000")]),
        "bad_header": _record(env, headers=[*env.headers(), ("x", b"y" * 300)]),
    }
    for code, record in cases.items():
        problem = record_problem(record, src="10000", dst="20000")
        assert problem is not None and problem.code == code, (code, problem)
    # a body whose src is repeated: the last one counts, as when a consumer decodes it
    twice = codec.packb({"src": "10000", **env.model_dump()} | {"src": "30000"})
    assert record_problem(_record(env, value=twice), src="10000", dst="20000") is not None
    # a chunk carries only part of the body: its headers are checked, its body after reassembly
    chunk = _record(env, value=b"part", headers=[*env.headers(), ("chunk", b"1/3")])
    assert record_problem(chunk, src="10000", dst="20000") is None


def test_a_peer_is_admitted_within_its_share_of_requests_and_bytes() -> None:
    gate = PeerAdmission(max_requests=2, max_bytes=100)
    with gate.admit("a", 60), gate.admit("a", 10):
        with pytest.raises(Rejected) as busy, gate.admit("a", 1):
            pass
        assert (busy.value.status, busy.value.code) == (429, "too_many_requests")
        assert busy.value.retry_after_s is not None
        with gate.admit("b", 100):  # another peer has its own share
            assert gate.in_progress("b") == (1, 100)
    with gate.admit("a", 60):
        with pytest.raises(Rejected, match="bytes in progress"), gate.admit("a", 41):
            pass
    assert gate.in_progress("a") == (0, 0)


async def test_dedup_remembers_across_reopen_and_forgets_after_retention(tmp_path: Path) -> None:
    path = tmp_path / "dedup.sqlite"
    keys = [("10000", "a", ""), ("10000", "a", "0/2"), ("10000", "b", "")]
    async with DedupStore(path, retention_s=3600) as store:
        assert await store.seen(keys) == set()
        await store.mark(keys[:2])
    async with DedupStore(path, retention_s=3600) as store:
        assert await store.seen(keys) == set(keys[:2])
    async with DedupStore(path, retention_s=0.05) as store:
        await asyncio.sleep(0.1)
        assert await store.seen(keys) == set()
        await store.prune()  # opening may already have pruned them: count what is left
        assert store.conn.execute("SELECT COUNT(*) FROM seen").fetchone() == (0,)


async def test_dedup_keys_on_the_sender_too(tmp_path: Path) -> None:
    # the same record id from another party is another record (a peer cannot mask another's)
    async with DedupStore(tmp_path / "dedup.sqlite", retention_s=3600) as store:
        await store.mark([("10000", "m1", "")])
        assert await store.seen([("10000", "m1", ""), ("30000", "m1", "")]) == {("10000", "m1", "")}


# -- TLS options and the diagnostic ping ---------------------------------------------------------


def test_tls_options_come_in_pairs_and_mtls_needs_a_ca(tmp_path: Path) -> None:
    cert, key, ca = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    with pytest.raises(SettingsError, match="TLS_CERT and BRIDGE_TLS_KEY"):
        BridgeOptions.from_env(environ={"BRIDGE_TLS_CERT": str(cert)})
    with pytest.raises(SettingsError, match="REQUIRE_CLIENT_CERT"):
        BridgeOptions.from_env(
            environ={
                "BRIDGE_TLS_CERT": str(cert),
                "BRIDGE_TLS_KEY": str(key),
                "BRIDGE_TLS_REQUIRE_CLIENT_CERT": "true",
            }
        )
    opts = BridgeOptions.from_env(
        environ={
            "BRIDGE_TLS_CERT": str(cert),
            "BRIDGE_TLS_KEY": str(key),
            "BRIDGE_TLS_CA": str(ca),
            "BRIDGE_TLS_REQUIRE_CLIENT_CERT": "1",
        }
    )
    assert tls.server_options(opts) == {
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_ca_certs": str(ca),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
    }
    assert tls.server_options(BridgeOptions()) == {}
    assert tls.peer_cas({"PARTY_MQ_CA_20000": str(ca), "PARTY_MQ_CA_X": "y"}) == {"20000": ca}


def test_a_ping_and_its_answer_are_checked_both_ways() -> None:
    mine, theirs = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    ping, body, headers = diag.make_ping("10000", "20000", mine)
    assert signing.verify(mine.public_key(), body, headers[SIGNATURE_HEADER])
    got = diag.parse_ping(body, signer="10000", own_party="20000")
    with pytest.raises(diag.DiagError, match="not 30000"):
        diag.parse_ping(body, signer="10000", own_party="30000")
    with pytest.raises(diag.DiagError, match="not signer"):
        diag.parse_ping(body, signer="11000", own_party="20000")
    answer, answer_headers = diag.make_pong(got, party_id="20000", key=theirs, max_body_bytes=9)
    pong = diag.check_pong(answer, answer_headers, ping=ping, peer_key=theirs.public_key())
    assert (pong.party, pong.nonce, pong.max_body_bytes) == ("20000", ping.nonce, 9)
    with pytest.raises(diag.DiagError, match="does not verify"):
        diag.check_pong(answer, answer_headers, ping=ping, peer_key=mine.public_key())
    other, _, _ = diag.make_ping("10000", "20000", mine)
    with pytest.raises(diag.DiagError, match="another ping"):
        diag.check_pong(answer, answer_headers, ping=other, peer_key=theirs.public_key())
