"""The flow_server's Prometheus metrics, served at ``GET /metrics``.

One registry per app (not the process-global one), so that several apps in one test process do
not collide. Jobs by state are counted in the database when scraped (one GROUP BY per scrape,
nothing in between); the rest is counted as events are applied.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from fedcore.messages import BODIES
from flow_server.models import Job, JobState

__all__ = ["CONTENT_TYPE", "FlowServerMetrics"]

_JOB_STATES = JobState.ALL


def _type_label(kind: str) -> str:
    # a peer chooses the type: only known ones become label values, so series stay few
    return kind if kind in BODIES else "other"


class FlowServerMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.events = Counter(
            "tessera_flow_server_events_applied",
            "envelopes consumed from fl.in.ctl and fl.status and applied, by type",
            ["type"],
            registry=r,
        )
        self.heartbeats = Counter(
            "tessera_flow_server_heartbeats",
            "worker.heartbeat envelopes read (kept in memory, not applied)",
            registry=r,
        )
        self.lost_steps = Counter(
            "tessera_flow_server_lost_steps",
            "running steps of this party failed because no heartbeat listed them in time",
            registry=r,
        )
        self.watched = Gauge(
            "tessera_flow_server_watched_steps",
            "this party's running steps whose heartbeats are being watched",
            registry=r,
        )
        self.dead_letters = Counter(
            "tessera_flow_server_dead_letters",
            "consumed envelopes that could not be applied, set aside on fl.dead, by type",
            ["type"],
            registry=r,
        )
        self.jobs = Gauge(
            "tessera_flow_server_jobs",
            "jobs in this party's database, by state",
            ["state"],
            registry=r,
        )

    def applied(self, kind: str) -> None:
        self.events.labels(_type_label(kind)).inc()

    def dead(self, kind: str) -> None:
        self.dead_letters.labels(_type_label(kind)).inc()

    def watch(self, count: Callable[[], int]) -> None:
        self.watched.set_function(count)

    def count_jobs(self, session: Session) -> None:
        counts = dict.fromkeys(_JOB_STATES, 0)
        for state, n in session.execute(select(Job.state, func.count()).group_by(Job.state)):
            counts[str(state)] = int(n)
        for state, n in counts.items():
            self.jobs.labels(state).set(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)
