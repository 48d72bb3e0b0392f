"""The diagnostic protocol behind ``tessera diagnose``: a signed ping and a discarding sink.

``POST /v1/ping``: a JSON body ``{src, dst, nonce, sent_ms}`` signed like a batch. The peer checks
the signature (a known peer, its key), that it is the ``dst`` and that the ping is fresh, and
answers a JSON body ``{party, version, nonce, src, max_body_bytes}`` signed with *its* key; the
caller checks that signature with the peer's configured public key and that ``party`` and
``nonce`` are the ones it asked for. A pass therefore proves both sides hold the keys the other
expects. ``POST /v1/diag/sink``: any signed body, verified and then discarded (never produced into
Kafka), answering its size; ``tessera diagnose`` measures throughput and size limits with it.
"""

from __future__ import annotations

import json
import time
import uuid
from importlib.metadata import PackageNotFoundError, version

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, StrictInt, StrictStr, ValidationError

from federation_bridge import signing
from federation_bridge.wire import PARTY_HEADER, SIGNATURE_HEADER

PING_PATH = "/v1/ping"
SINK_PATH = "/v1/diag/sink"
PING_MAX_AGE_S = 300.0


def bridge_version() -> str:
    try:
        return version("tessera")
    except PackageNotFoundError:
        return "0+unknown"


class DiagError(ValueError):
    """A ping or its answer did not check out; the message says what."""


class Ping(BaseModel):
    src: StrictStr
    dst: StrictStr
    nonce: StrictStr
    sent_ms: StrictInt


class Pong(BaseModel):
    party: StrictStr
    version: StrictStr
    nonce: StrictStr
    src: StrictStr
    max_body_bytes: StrictInt


def _dump(model: BaseModel) -> bytes:
    return json.dumps(model.model_dump(), sort_keys=True).encode()


def signed_headers(party_id: str, key: Ed25519PrivateKey, body: bytes) -> dict[str, str]:
    return {PARTY_HEADER: party_id, SIGNATURE_HEADER: signing.sign(key, body)}


def make_ping(
    party_id: str, peer_id: str, key: Ed25519PrivateKey
) -> tuple[Ping, bytes, dict[str, str]]:
    ping = Ping(src=party_id, dst=peer_id, nonce=uuid.uuid4().hex, sent_ms=int(time.time() * 1000))
    body = _dump(ping)
    return ping, body, {"Content-Type": "application/json", **signed_headers(party_id, key, body)}


def parse_ping(body: bytes, *, signer: str, own_party: str) -> Ping:
    """A ping whose signature was verified as ``signer``'s; refuse one not meant for us or stale."""
    try:
        ping = Ping.model_validate_json(body)
    except ValidationError as exc:
        raise DiagError(f"not a valid ping: {exc}") from exc
    if ping.src != signer:
        raise DiagError(f"ping src {ping.src!r} is not signer {signer!r}")
    if ping.dst != own_party:
        raise DiagError(f"ping is for {ping.dst!r}, not {own_party}")
    if abs(time.time() - ping.sent_ms / 1000) > PING_MAX_AGE_S:
        raise DiagError("ping is stale (or the clocks differ by more than 5 minutes)")
    return ping


def make_pong(
    ping: Ping, *, party_id: str, key: Ed25519PrivateKey, max_body_bytes: int
) -> tuple[bytes, dict[str, str]]:
    pong = Pong(
        party=party_id,
        version=bridge_version(),
        nonce=ping.nonce,
        src=ping.src,
        max_body_bytes=max_body_bytes,
    )
    body = _dump(pong)
    return body, {"Content-Type": "application/json", **signed_headers(party_id, key, body)}


def check_pong(
    body: bytes, headers: dict[str, str], *, ping: Ping, peer_key: Ed25519PublicKey
) -> Pong:
    """The peer's answer, once its signature, party and nonce checked out."""
    lowered = {k.lower(): v for k, v in headers.items()}
    signature = lowered.get(SIGNATURE_HEADER.lower())
    if not signature:
        raise DiagError("the answer is not signed")
    if not signing.verify(peer_key, body, signature):
        raise DiagError("the answer's signature does not verify with the peer's public key")
    try:
        pong = Pong.model_validate_json(body)
    except ValidationError as exc:
        raise DiagError(f"not a valid answer: {exc}") from exc
    if pong.party != ping.dst:
        raise DiagError(f"answered by party {pong.party!r}, expected {ping.dst!r}")
    if pong.nonce != ping.nonce or pong.src != ping.src:
        raise DiagError("the answer is for another ping (nonce or src differ)")
    return pong
