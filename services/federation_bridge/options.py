"""The bridge's own tuning knobs, read like PartySettings (env file overlaid by the environment).

Every knob has a safe default; none is needed to run a party. Units are in the names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Self

from pydantic import BaseModel, Field, model_validator

from fedcore.settings import SettingsError, environment

_PREFIX = "BRIDGE_"


class BridgeOptions(BaseModel):
    """Batch sizes, buffering, retry and de-duplication limits (env ``BRIDGE_<FIELD>``)."""

    # one POST carries at most this many records / about this many value bytes (at least 1 record)
    batch_max_records: int = Field(default=500, ge=1)
    batch_max_bytes: int = Field(default=4_000_000, ge=1)
    # per peer, records read from Kafka but not yet delivered; when full, reading pauses
    buffer_max_records: int = Field(default=2_000, ge=1)
    buffer_max_bytes: int = Field(default=32_000_000, ge=1)
    # per peer, batches sent and not yet answered (taken from the buffer's bounds above); the peer
    # applies them in order
    batches_in_flight: int = Field(default=4, ge=1)
    # how long the receiver holds a batch whose predecessor has not arrived before refusing it
    order_wait_s: float = Field(default=5.0, gt=0)
    # at most one offset commit per interval: a commit per delivered batch loads the broker, and
    # a crash re-sends at most this much more (the peer de-duplicates it)
    commit_interval_s: float = Field(default=0.2, ge=0)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    # a request to a peer, and a body from a peer (a slower one is refused, 408)
    http_timeout_s: float = Field(default=30.0, gt=0)
    # how long a record id is remembered by the receiver; older batches are refused
    dedup_retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    # fsync every de-duplication commit: also exactly-once across a power loss (slower)
    dedup_fsync: bool = False
    # what the receiver takes from each peer: a body (declared in Content-Length, checked before
    # it is read), records in one batch, requests and body bytes in progress at once (over: 429)
    max_body_bytes: int = Field(default=64_000_000, ge=1)
    receive_max_records: int = Field(default=10_000, ge=1)
    peer_max_requests: int = Field(default=16, ge=1)
    peer_max_bytes: int = Field(default=128_000_000, ge=1)
    # /health and /metrics are served here, not on the peers' port (EXPOSE_MQ_HTTP_PORT); on
    # internal_host, else BIND_HOST (the chart binds it to the pod's address for its probes while
    # the peers' port stays behind the TLS proxy)
    internal_port: int = Field(default=9390, ge=1, le=65535)
    internal_host: str | None = None
    shutdown_grace_s: float = Field(default=5.0, ge=0)
    # TLS of the listener (HTTPS when both are set); with tls_ca, peers' client certificates are
    # verified against it, and required when tls_require_client_cert (mTLS)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_require_client_cert: bool = False
    # what the sender presents to peers that require client certificates
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    # CAs the sender trusts for every peer without its own PARTY_MQ_CA_<id> (else the system's)
    tls_ca_bundle: Path | None = None

    @model_validator(mode="after")
    def _checks(self) -> Self:
        if self.peer_max_bytes < self.max_body_bytes:
            raise ValueError("BRIDGE_PEER_MAX_BYTES must be at least BRIDGE_MAX_BODY_BYTES")
        if self.batch_max_records > self.receive_max_records:
            raise ValueError("BRIDGE_BATCH_MAX_RECORDS must be at most BRIDGE_RECEIVE_MAX_RECORDS")
        if self.order_wait_s >= self.http_timeout_s:
            raise ValueError("BRIDGE_ORDER_WAIT_S must be below BRIDGE_HTTP_TIMEOUT_S")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("BRIDGE_TLS_CERT and BRIDGE_TLS_KEY must be set together")
        if (self.tls_client_cert is None) != (self.tls_client_key is None):
            raise ValueError("BRIDGE_TLS_CLIENT_CERT and BRIDGE_TLS_CLIENT_KEY go together")
        if self.tls_require_client_cert and (self.tls_ca is None or self.tls_cert is None):
            raise ValueError(
                "BRIDGE_TLS_REQUIRE_CLIENT_CERT needs BRIDGE_TLS_CA and the listener's cert/key"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @classmethod
    def from_env(
        cls, env_file: str | Path | None = None, environ: Mapping[str, str] | None = None
    ) -> Self:
        env = environment(env_file, environ)
        fields = {
            name: env[key]
            for name in cls.model_fields
            if (key := _PREFIX + name.upper()) in env and env[key]
        }
        try:
            return cls.model_validate(fields)
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
