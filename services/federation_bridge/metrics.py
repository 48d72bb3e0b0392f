"""The bridge's Prometheus metrics, served at ``GET /metrics``.

One registry per app (not the process-global one), so that several apps in one test process do
not collide. Gauges that describe current state (read-ahead, lag) are refreshed at scrape time.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "BridgeMetrics"]

_LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BridgeMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.records_out = Counter(
            "tessera_bridge_records_sent", "records delivered to a peer (2xx)", ["peer"], registry=r
        )
        self.bytes_out = Counter(
            "tessera_bridge_bytes_sent",
            "batch body bytes delivered to a peer",
            ["peer"],
            registry=r,
        )
        self.batches_out = Counter(
            "tessera_bridge_batches_sent", "batches delivered to a peer", ["peer"], registry=r
        )
        self.retries = Counter(
            "tessera_bridge_send_retries",
            "failed delivery attempts (each is retried)",
            ["peer"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "tessera_bridge_dead_lettered", "outbound records set aside on fl.dead", registry=r
        )
        self.records_in = Counter(
            "tessera_bridge_records_received",
            "records from a peer produced into this party's Kafka",
            ["peer"],
            registry=r,
        )
        self.duplicates = Counter(
            "tessera_bridge_duplicates",
            "records from a peer dropped as already produced",
            ["peer"],
            registry=r,
        )
        self.rejects = Counter(
            "tessera_bridge_rejected_batches", "batches refused, by reason", ["reason"], registry=r
        )
        self.in_progress_bytes = Gauge(
            "tessera_bridge_peer_bytes_in_progress",
            "declared body bytes of a peer's requests being received (bounded per peer)",
            ["peer"],
            registry=r,
        )
        self.pending = Gauge(
            "tessera_bridge_pending_records",
            "records read from Kafka and buffered, not yet delivered, per peer",
            ["peer"],
            registry=r,
        )
        self.in_flight = Gauge(
            "tessera_bridge_in_flight_records",
            "outbound records read but not yet delivered or dead-lettered",
            registry=r,
        )
        self.lag = Gauge(
            "tessera_bridge_outbound_lag_records",
            "records on an outbound topic not yet delivered (log end minus commit point)",
            ["topic"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "tessera_bridge_delivery_seconds",
            "from a record's Kafka timestamp on fl.out.* to the peer's 2xx",
            ["peer"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
