"""The worker's Prometheus metrics, served at ``GET /metrics`` next to ``/health``.

One registry per worker (not the process-global one), so that several workers in one test process
do not collide. The running-steps gauge is read at scrape time from the worker itself.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from fedcore.bus import Bus
from fedcore.envelope import Envelope

__all__ = ["CONTENT_TYPE", "CountingBus", "WorkerMetrics"]

_STEP_BUCKETS_S = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class WorkerMetrics:
    def __init__(self, running: Callable[[], int]) -> None:
        self.registry = r = CollectorRegistry()
        self.consumed = Counter(
            "tessera_task_engine_records_consumed",
            "envelopes the worker read from fl.tasks and fl.control",
            ["topic"],
            registry=r,
        )
        self.produced = Counter(
            "tessera_task_engine_records_produced",
            "envelopes the worker and its steps published (status, fed, results, logs, …)",
            ["topic"],
            registry=r,
        )
        self.tasks = Counter(
            "tessera_task_engine_tasks",
            "task.run envelopes taken, by what became of them (started / skipped)",
            ["outcome"],
            registry=r,
        )
        self.step_duration = Histogram(
            "tessera_task_engine_step_duration_seconds",
            "from a step's start to its reported end, by component and final state",
            ["component", "outcome"],
            buckets=_STEP_BUCKETS_S,
            registry=r,
        )
        self.dead = Counter(
            "tessera_task_engine_dead_letters",
            "envelopes the worker could not apply and set aside on fl.dead",
            registry=r,
        )
        self.heartbeats = Counter(
            "tessera_task_engine_heartbeats_sent", "worker.heartbeat envelopes sent", registry=r
        )
        self.running = Gauge(
            "tessera_task_engine_running_steps", "steps running on this worker now", registry=r
        )
        self.running.set_function(running)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class CountingBus(Bus):
    """The worker's bus, counting every envelope published through it (its steps' too)."""

    def __init__(self, bootstrap: str, client_id: str, *, produced: Counter) -> None:
        super().__init__(bootstrap, client_id)
        self._produced = produced

    async def publish(self, topic: str, env: Envelope) -> None:
        await super().publish(topic, env)
        self._produced.labels(topic).inc()
