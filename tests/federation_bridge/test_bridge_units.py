"""The bridge's pure parts without Kafka: offsets, buffering, signing, the wire format, dedup."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.settings import SettingsError
from federation_bridge import diag, signing, tls
from federation_bridge.buffer import PeerBuffer
from federation_bridge.dedup import DedupStore
from federation_bridge.offsets import OffsetTracker
from federation_bridge.options import BridgeOptions
from federation_bridge.wire import SIGNATURE_HEADER, Batch, WireError, WireRecord

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
    assert Batch.decode(batch.encode()) == batch
    with pytest.raises(WireError):
        Batch.decode(b"\xc1")
    with pytest.raises(WireError):
        Batch.decode(Batch.model_validate({**batch.model_dump(), "src": "1"}).encode()[:-3])


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
        assert await store.prune() == 2


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
