"""The app factory: settings in, a FastAPI app out, with every resource opened in its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from fedcore.bus import Bus
from fedcore.envelope import Envelope
from fedcore.hostcheck import HostCheck
from fedcore.settings import PartySettings
from flow_server import auth, errors, grants, protocol
from flow_server.auth import TokenDep
from flow_server.catalog import Catalog, component_catalog
from flow_server.db import make_engine, make_sessionmaker, upgrade_to_head
from flow_server.deadlines import AcceptanceDeadlines
from flow_server.deps import CleanParamsDep
from flow_server.events import EventConsumer
from flow_server.heartbeats import (
    HEARTBEAT,
    HeartbeatWatch,
    RunningStep,
    report_lost,
    running_here,
)
from flow_server.metrics import FlowServerMetrics
from flow_server.models import Job, JobState
from flow_server.openapi import error_responses
from flow_server.outbox import OutboxPublisher
from flow_server.policy import Policy
from flow_server.routes import components, data, decisions, health, jobs, metrics, models, pipelines
from flow_server.routes import grants as grant_routes

log = logging.getLogger(__name__)

PREFIX = "/flow-server"


@dataclass
class FlowServer:
    """The running service's resources, handed to routes through ``deps``."""

    settings: PartySettings
    engine: Engine
    sessions: sessionmaker[Session]
    bus: Bus
    party: protocol.PartyContext
    outbox: OutboxPublisher
    consumer: EventConsumer
    # one flow_server per party: this lock orders REST job submissions and consumed events
    lock: asyncio.Lock
    deadlines: AcceptanceDeadlines | None = None
    heartbeats: HeartbeatWatch | None = None
    metrics: FlowServerMetrics = field(default_factory=FlowServerMetrics)

    @property
    def catalog(self) -> Catalog:
        return self.party.catalog

    def _apply_sync(self, env: Envelope) -> None:
        # an error rolls the transaction back; the consumer's guard decides what happens next
        with self.sessions.begin() as session:
            protocol.apply(session, self.party, env)

    async def expire_acceptance(self, job_id: str) -> None:
        """An acceptance deadline fired: time the job out if it is still waiting."""

        def expire() -> None:
            with self.sessions.begin() as session:
                protocol.expire_acceptance(session, self.party, job_id)

        async with self.lock:
            await asyncio.to_thread(expire)
            await self.outbox.flush()

    async def worker_lost(self, step: RunningStep, silent_s: float) -> None:
        """No heartbeat covered a running step of ours in time: fail it (if it still runs)."""

        def report() -> bool:
            with self.sessions.begin() as session:
                return report_lost(session, self.party, step, silent_s)

        async with self.lock:
            if await asyncio.to_thread(report):
                self.metrics.lost_steps.inc()
            await self.outbox.flush()

    def _held_deadline(self, job_id: str) -> int | None:
        """The deadline of a proposal this party holds for its operator (None: not held)."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            if job is None or job.state != JobState.PENDING_APPROVAL:
                return None
            return job.accept_deadline_ms

    async def apply(self, env: Envelope) -> None:
        """Apply one consumed envelope and publish what it produced."""
        if env.type == HEARTBEAT:  # in memory only, never in the database
            if self.heartbeats is not None:
                self.heartbeats.observe(env)
            self.metrics.heartbeats.inc()
            return
        async with self.lock:
            await asyncio.to_thread(self._apply_sync, env)
            if env.type == "job.propose" and self.deadlines is not None:
                deadline_ms = await asyncio.to_thread(self._held_deadline, env.job_id)
                if deadline_ms is not None:
                    self.deadlines.arm(env.job_id, deadline_ms)
            await self.outbox.flush()
        self.metrics.applied(env.type)
        if self.heartbeats is not None:
            self.heartbeats.observe(env)


def create_app(
    settings: PartySettings,
    *,
    catalog: Catalog | None = None,
    shutdown_timeout_s: float = 10.0,
) -> FastAPI:
    """Build the flow_server for one party; nothing is opened until the lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.db_url)
        try:
            await asyncio.to_thread(upgrade_to_head, engine)
            sessions = make_sessionmaker(engine)
            if settings.setup_api_token is not None:
                await asyncio.to_thread(
                    _register_setup_token, sessions, settings.setup_api_token.get_secret_value()
                )
            if settings.input_grants:
                await asyncio.to_thread(_make_setting_grants, sessions, settings)
            bus = Bus(settings.kafka_bootstrap, client_id=f"flow_server-{settings.party_id}")
            await bus.start()
            try:
                party = protocol.PartyContext(
                    me=settings.party_id,
                    peers=frozenset(settings.peers),
                    catalog=catalog if catalog is not None else component_catalog(),
                    default_output=settings.outputs_dir,
                    accept_timeout_s=settings.accept_timeout_s,
                    policy=Policy.from_settings(settings),
                    platform_retries=settings.platform_retries,
                    state_dir=settings.state_dir,
                )
                server = FlowServer(
                    settings=settings,
                    engine=engine,
                    sessions=sessions,
                    bus=bus,
                    party=party,
                    outbox=OutboxPublisher(sessions, bus),
                    consumer=EventConsumer(
                        bus,
                        group_id=f"flow_server-{settings.party_id}",
                        apply=lambda env: server.apply(env),
                        on_dead=lambda kind: server.metrics.dead(kind),
                    ),
                    lock=asyncio.Lock(),
                )
                app.state.flow_server = server
                server.deadlines = AcceptanceDeadlines(server.expire_acceptance)
                for job_id, deadline_ms in await asyncio.to_thread(
                    protocol.waiting_for_answers, sessions, party
                ):
                    server.deadlines.arm(job_id, deadline_ms)
                server.heartbeats = HeartbeatWatch(
                    settings.party_id,
                    timeout_s=settings.worker_lost_after_s,
                    lost=server.worker_lost,
                )
                for step in await asyncio.to_thread(running_here, sessions, settings.party_id):
                    server.heartbeats.watch(step)
                watch = server.heartbeats
                server.metrics.watch(lambda: len(watch.watched))
                await server.outbox.flush()  # whatever a previous run committed but did not send
                server.consumer.start()
                try:
                    yield
                finally:
                    await server.heartbeats.close()
                    await server.deadlines.close()
                    await server.consumer.stop(shutdown_timeout_s)
            finally:
                await asyncio.wait_for(bus.stop(), shutdown_timeout_s)
        finally:
            engine.dispose()

    app = FastAPI(
        title="Tessera flow_server",
        lifespan=lifespan,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
    )
    errors.install(app)
    # every route but /health needs an API token when the server is not on loopback (auth.py)
    for router in (
        pipelines.router,
        jobs.router,
        data.router,
        models.router,
        grant_routes.router,
        decisions.router,
        components.router,
    ):
        app.include_router(
            router,
            prefix=PREFIX,
            dependencies=[TokenDep, CleanParamsDep],
            responses=error_responses(401, 422),
        )
    app.include_router(health.router, prefix=PREFIX, responses=error_responses(503))
    app.include_router(metrics.router)
    app.add_middleware(HostCheck, settings=settings)  # on loopback: no DNS rebinding
    return app


def _register_setup_token(sessions: sessionmaker[Session], token: str) -> None:
    with sessions.begin() as session:
        auth.register_setup_token(session, token)


def _make_setting_grants(sessions: sessionmaker[Session], settings: PartySettings) -> None:
    with sessions.begin() as session:
        grants.ensure_setting_grants(session, settings.input_grants)
