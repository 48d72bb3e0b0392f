"""The bridge's two FastAPI apps. The peers' app (:func:`create_app`, on ``EXPOSE_MQ_HTTP_PORT``)
serves only signed endpoints: ``POST /v1/records`` (receiver), ``POST /v1/ping`` and
``POST /v1/diag/sink`` (diagnostics, :mod:`federation_bridge.diag`), and runs the sender in its
lifespan. The internal app (:func:`create_internal_app`, on ``BRIDGE_INTERNAL_PORT``) serves
``GET /health`` and ``GET /metrics`` (Prometheus) to this party only.

A signed request is taken in this order, each step before the next costs anything: the claimed
party is a known peer and a signature header is present (401), the body declares its size within
``BRIDGE_MAX_BODY_BYTES`` (411/413), the peer is within its share of requests and bytes in
progress (429, :mod:`federation_bridge.admission`), then the body is read up to its declared size
and verified (408 if it does not arrive within ``BRIDGE_HTTP_TIMEOUT_S``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from fedcore.bus import Bus, PublishFailed
from fedcore.settings import PartySettings, SettingsError, environment
from federation_bridge import diag, signing, tls
from federation_bridge.admission import RETRY_AFTER_S, PeerAdmission
from federation_bridge.dedup import DedupStore
from federation_bridge.deps import BridgeState, StateDep
from federation_bridge.metrics import CONTENT_TYPE, BridgeMetrics
from federation_bridge.options import BridgeOptions
from federation_bridge.receiver import Receiver, Rejected
from federation_bridge.recovery import recover_pending
from federation_bridge.sender import Sender
from federation_bridge.wire import PARTY_HEADER, PATH, SIGNATURE_HEADER

log = logging.getLogger(__name__)

DEDUP_FILE = "bridge-dedup.sqlite"
_PING_MAX_BYTES = 4096


def create_app(
    settings: PartySettings | None = None,
    options: BridgeOptions | None = None,
    *,
    env_file: str | Path | None = None,
) -> FastAPI:
    """The bridge app; settings and keys are read here (not at import), so errors surface early."""
    settings = settings or PartySettings.from_env(env_file)
    options = options or BridgeOptions.from_env(env_file)
    private_key, public_keys = _load_keys(settings)
    cas = tls.peer_cas(environment(env_file))
    contexts = {peer: tls.client_context(options, cas.get(peer)) for peer in settings.peers}
    metrics = BridgeMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        party = settings.party_id
        dedup = DedupStore(
            settings.state_dir / DEDUP_FILE,
            retention_s=options.dedup_retention_s,
            fsync=options.dedup_fsync,
        )
        bus = Bus(settings.kafka_bootstrap, client_id=f"bridge-{party}")
        timeout = httpx.Timeout(options.http_timeout_s, connect=min(options.http_timeout_s, 5.0))
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(dedup)
            await stack.enter_async_context(bus)
            # before serving: the peer's retries of what a crash left pending must see its fate
            await recover_pending(dedup, settings.kafka_bootstrap)
            clients = {
                peer: await stack.enter_async_context(
                    httpx.AsyncClient(timeout=timeout, verify=contexts[peer])
                )
                for peer in settings.peers
            }
            receiver = Receiver(
                party_id=party,
                public_keys=public_keys,
                publisher=bus,
                dedup=dedup,
                max_age_s=options.dedup_retention_s,
                order_wait_s=options.order_wait_s,
                max_records=options.receive_max_records,
                metrics=metrics,
            )
            sender = Sender(
                settings=settings,
                options=options,
                bus=bus,
                clients=clients,
                private_key=private_key,
                metrics=metrics,
            )
            await sender.start()
            admission = PeerAdmission(
                max_requests=options.peer_max_requests,
                max_bytes=options.peer_max_bytes,
                metrics=metrics,
            )
            app.state.bridge = BridgeState(
                settings, options, receiver, sender, metrics, private_key, admission
            )
            log.info("bridge of party %s up; peers %s", party, settings.peers)
            try:
                yield
            finally:
                await sender.stop()

    app = FastAPI(
        title=f"Tessera federation bridge ({settings.party_id})",
        lifespan=lifespan,
        openapi_url=None,  # peers need no description of this party's bridge
    )

    @app.post(PATH)
    async def post_records(request: Request, state: StateDep) -> Response:
        """A peer's signed batch: produce its new records into this party's inbound topics."""
        party = request.headers.get(PARTY_HEADER)
        signature = request.headers.get(SIGNATURE_HEADER)
        try:
            peer = state.receiver.claimed_peer(party, signature)
            size = _declared_size(request, state.options.max_body_bytes)
            with state.admission.admit(peer, size):
                body = await _read_body(request, size, state.options.http_timeout_s)
                accepted = await state.receiver.receive(party, signature, body)
        except Rejected as exc:
            state.receiver.reject(party, exc)
            return _error(exc)
        except (PublishFailed, KafkaError) as exc:
            error = exc.error if isinstance(exc, PublishFailed) else exc
            log.warning("cannot produce a batch into Kafka: %r", error)
            state.receiver.stats.rejected["kafka_unavailable"] += 1
            reason = f"this party's Kafka refused: {error!r}"
            return _error(Rejected(503, "kafka_unavailable", reason, retry_after_s=RETRY_AFTER_S))
        return JSONResponse(
            {
                "batch_id": accepted.batch_id,
                "produced": accepted.produced,
                "duplicates": accepted.duplicates,
            }
        )

    @app.post(diag.PING_PATH)
    async def ping(request: Request, state: StateDep) -> Response:
        """A signed ping from a peer, answered signed with this party's id and version."""
        party = request.headers.get(PARTY_HEADER)
        try:
            body = await _signed_body(request, state, _PING_MAX_BYTES)
            signer = state.receiver.verify_signer(
                party, request.headers.get(SIGNATURE_HEADER), body
            )
            try:
                ping = diag.parse_ping(body, signer=signer, own_party=state.settings.party_id)
            except diag.DiagError as exc:
                raise Rejected(403, "bad_ping", str(exc)) from exc
        except Rejected as exc:
            state.receiver.reject(party, exc)
            return _error(exc)
        answer, headers = diag.make_pong(
            ping,
            party_id=state.settings.party_id,
            key=state.private_key,
            max_body_bytes=state.options.max_body_bytes,
        )
        return Response(answer, headers=headers)

    @app.post(diag.SINK_PATH)
    async def sink(request: Request, state: StateDep) -> Response:
        """A signed diagnostic payload: verified, then discarded (it never reaches Kafka)."""
        party = request.headers.get(PARTY_HEADER)
        try:
            body = await _signed_body(request, state, state.options.max_body_bytes)
            state.receiver.verify_signer(party, request.headers.get(SIGNATURE_HEADER), body)
        except Rejected as exc:
            state.receiver.reject(party, exc)
            return _error(exc)
        return JSONResponse({"bytes": len(body)})

    return app


def create_internal_app(peers_app: FastAPI) -> FastAPI:
    """``/health`` and ``/metrics`` over the state the peers' app opened in its lifespan."""
    app = FastAPI(title="Tessera federation bridge (internal)", openapi_url=None)
    app.state = peers_app.state

    @app.get("/metrics")
    async def metrics_endpoint(state: StateDep) -> Response:
        """Prometheus text format."""
        await state.sender.refresh_metrics()
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/health")
    async def health(state: StateDep) -> JSONResponse:
        """200 while the sender runs, 503 once it died; counters of both halves."""
        stats = state.receiver.stats
        sender = state.sender.stats()
        return JSONResponse(
            {
                "party": state.settings.party_id,
                "version": diag.bridge_version(),
                "tls": state.options.tls,
                "peers": state.settings.peers,
                "receiver": {
                    "batches": stats.batches,
                    "produced": stats.produced,
                    "duplicates": stats.duplicates,
                    "rejected": dict(stats.rejected),
                },
                "sender": sender,
            },
            status_code=503 if state.sender.failure else 200,
        )

    return app


def _load_keys(settings: PartySettings) -> tuple[Ed25519PrivateKey, dict[str, Ed25519PublicKey]]:
    if settings.private_key_file is None:
        raise SettingsError("PARTY_PRIVATE_KEY is not set: the bridge must sign what it sends")
    private_key = signing.load_private_key(settings.private_key_file)
    public_keys: dict[str, Ed25519PublicKey] = {}
    for peer in settings.peers:
        path = settings.public_keys.get(peer)
        if path is None:
            # still start: this party can send to the peer, only its batches are refused
            log.error("PARTY_PUBLIC_KEY_%s is not set: batches from party %s will be refused",
                      peer, peer)  # fmt: skip
            continue
        public_keys[peer] = signing.load_public_key(path)
    return private_key, public_keys


def _declared_size(request: Request, limit: int) -> int:
    """The body size the request declares; Rejected unless it does, within ``limit``."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit() or len(declared) > 19:
        raise Rejected(411, "length_required", "a Content-Length header is required")
    size = int(declared)
    if size > limit:
        raise Rejected(413, "too_large", f"the body of {size} bytes exceeds {limit} bytes")
    return size


async def _read_body(request: Request, size: int, timeout_s: float) -> bytes:
    """Exactly the declared ``size`` bytes of the body, within ``timeout_s`` (a trickling body
    would otherwise hold one of its peer's admissions for ever)."""
    chunks: list[bytes] = []
    received = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                chunks.append(chunk)
                received += len(chunk)
                if received > size:
                    break
    except ClientDisconnect as exc:
        raise Rejected(400, "incomplete", "the client went away before sending its body") from exc
    except TimeoutError as exc:
        raise Rejected(408, "slow_body", f"the body did not arrive within {timeout_s} s") from exc
    if received != size:
        raise Rejected(400, "incomplete", f"the body is not the {size} bytes declared")
    return b"".join(chunks)  # one copy, as Request.body() makes


async def _signed_body(request: Request, state: BridgeState, limit: int) -> bytes:
    """A diagnostic request's body, admitted and read like a batch's (unverified yet)."""
    party = state.receiver.claimed_peer(
        request.headers.get(PARTY_HEADER), request.headers.get(SIGNATURE_HEADER)
    )
    size = _declared_size(request, limit)
    with state.admission.admit(party, size):
        return await _read_body(request, size, state.options.http_timeout_s)


def _error(exc: Rejected) -> JSONResponse:
    headers = {} if exc.retry_after_s is None else {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(
        {"error": exc.code, "reason": exc.reason}, status_code=exc.status, headers=headers
    )
