"""The dashboard's Prometheus metrics, served at ``GET /metrics``.

One registry per app (not the process-global one), so that several apps in one test process do
not collide. What the consumer counts (since this process started) and the number of jobs in the
database are read at scrape time; the open event streams are counted as they open and close.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from dashboard.consumer import Consumer
from dashboard.store import Store

__all__ = ["CONTENT_TYPE", "DashboardMetrics"]


class DashboardMetrics:
    def __init__(self, store: Store, consumer: Consumer) -> None:
        self.registry = r = CollectorRegistry()
        self.records_read = Gauge(
            "tessera_dashboard_records_read",
            "records read from Kafka since the dashboard started",
            registry=r,
        )
        self.records_read.set_function(lambda: consumer.status.records)
        self.records_applied = Gauge(
            "tessera_dashboard_records_applied",
            "envelopes folded into a job's rows since the dashboard started",
            registry=r,
        )
        self.records_applied.set_function(lambda: consumer.status.applied)
        self.records_skipped = Gauge(
            "tessera_dashboard_records_skipped",
            "envelopes of a known type that changed no view (malformed)",
            registry=r,
        )
        self.records_skipped.set_function(lambda: consumer.status.skipped)
        self.records_set_aside = Gauge(
            "tessera_dashboard_records_set_aside",
            "envelopes the dashboard could not apply and set aside on fl.dead, since it started",
            registry=r,
        )
        self.records_set_aside.set_function(lambda: consumer.status.set_aside)
        self.jobs = Gauge("tessera_dashboard_jobs", "jobs in the dashboard's database", registry=r)
        self.jobs.set_function(lambda: _or_nan(store.total))
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


def _or_nan(count: Callable[[], int]) -> float:
    """``count()``, or NaN while the database does not answer (the scrape still succeeds)."""
    try:
        return float(count())
    except SQLAlchemyError:
        return math.nan
