"""The dashboard's Prometheus metrics, served at ``GET /metrics``.

One registry per app (not the process-global one), so that several apps in one test process do
not collide. What the consumer and the aggregator already count is read at scrape time (the
aggregator's counts restart with each replay from the beginning, hence gauges); the open event
streams are counted as they open and close.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from dashboard.aggregator import Aggregator
from dashboard.consumer import Consumer

__all__ = ["CONTENT_TYPE", "DashboardMetrics"]


class DashboardMetrics:
    def __init__(self, aggregator: Aggregator, consumer: Consumer) -> None:
        self.registry = r = CollectorRegistry()
        self.records_read = Gauge(
            "tessera_dashboard_records_read",
            "records read from Kafka since the last (re)connection's replay",
            registry=r,
        )
        self.records_read.set_function(lambda: consumer.status.records)
        self.records_applied = Gauge(
            "tessera_dashboard_records_applied",
            "envelopes folded into a job view since the last replay",
            registry=r,
        )
        self.records_applied.set_function(lambda: aggregator.applied)
        self.records_skipped = Gauge(
            "tessera_dashboard_records_skipped",
            "envelopes of a known type that changed no view (malformed or stale)",
            registry=r,
        )
        self.records_skipped.set_function(lambda: aggregator.skipped)
        self.records_set_aside = Gauge(
            "tessera_dashboard_records_set_aside",
            "envelopes the dashboard could not apply and set aside on fl.dead, since the replay",
            registry=r,
        )
        self.records_set_aside.set_function(lambda: consumer.status.set_aside)
        self.jobs = Gauge("tessera_dashboard_jobs", "jobs with a view", registry=r)
        self.jobs.set_function(lambda: len(aggregator))
        self.sse_clients = Gauge(
            "tessera_dashboard_sse_clients", "open /api/events streams", registry=r
        )

    async def counted(self, stream: AsyncIterator[str]) -> AsyncIterator[str]:
        """``stream``, counted in ``sse_clients`` while it is open."""
        self.sse_clients.inc()
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self.sse_clients.dec()

    def render(self) -> bytes:
        return generate_latest(self.registry)
