"""The dashboard's FastAPI app: settings in, a lifespan that runs the Kafka consumer, the routes.

On start the lifespan brings the dashboard's database to its newest migration and starts the
consumer, which goes on from the offsets the dashboard's consumer group last committed
(:mod:`dashboard.consumer`); the views are read from the database, so start-up does not depend on
how many jobs it holds. On stop it cancels the consumer and waits (bounded) for it.
When a token is required (off loopback), it also opens the flow_server's database, where the
party's API tokens are (:mod:`dashboard.auth`); on loopback the Host header is checked
(:mod:`fedcore.hostcheck`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from sqlalchemy import create_engine

from dashboard import api, approvals, errors, login, pages
from dashboard.auth import LoginRequired, Sessions
from dashboard.consumer import Changes, Consumer, EnvelopeSource, KafkaSource
from dashboard.db import upgrade_to_head
from dashboard.deps import MetricsDep, State
from dashboard.metrics import CONTENT_TYPE, DashboardMetrics
from dashboard.store import Store
from fedcore.apitokens import token_required
from fedcore.dburl import make_engine, normalize_url
from fedcore.hostcheck import HostCheck
from fedcore.settings import PartySettings

STOP_TIMEOUT_S = 5.0


def create_app(settings: PartySettings, *, source: EnvelopeSource | None = None) -> FastAPI:
    """The app for one party; ``source`` defaults to that party's Kafka."""
    required = token_required(settings)
    records = source or KafkaSource(
        settings.kafka_bootstrap,
        client_id=f"dashboard-{settings.party_id}",
        group_id=f"dashboard-{settings.party_id}",
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[State]:
        database = make_engine(settings.dashboard_db_url)
        await asyncio.to_thread(upgrade_to_head, database)
        store, changes = Store(database), Changes()
        consumer = Consumer(records, store, changes)
        app.state.changes = changes  # so the server can end event streams when it stops
        # the party's API tokens live in the flow_server's database
        engine = (
            create_engine(normalize_url(settings.db_url), pool_pre_ping=True) if required else None
        )
        consumer.start()
        try:
            yield State(
                settings=settings,
                store=store,
                changes=changes,
                consumer=consumer,
                metrics=DashboardMetrics(store, consumer),
                sessions=Sessions(engine) if engine is not None else None,
            )
        finally:
            changes.close()
            await consumer.stop(STOP_TIMEOUT_S)
            if engine is not None:
                engine.dispose()
            database.dispose()

    app = FastAPI(
        title="Tessera dashboard",
        summary=f"Jobs, steps and metrics seen by party {settings.party_id}",
        lifespan=lifespan,
    )
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(approvals.router)
    app.include_router(login.router)
    errors.install(app)
    app.add_middleware(LoginRequired)
    app.add_middleware(HostCheck, settings=settings)  # outermost: before any other work

    @app.get("/metrics", response_class=Response, include_in_schema=False)
    async def metrics(metrics: MetricsDep) -> Response:
        """Prometheus text format (the job count is read from the database)."""
        return Response(await asyncio.to_thread(metrics.render), media_type=CONTENT_TYPE)

    return app
