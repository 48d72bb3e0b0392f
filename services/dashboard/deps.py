"""What the routes get from the lifespan: typed accessors and their ``Annotated`` aliases.

Routes that read the store are plain functions (FastAPI runs them in its thread pool), as the
store's sessions are synchronous; each read is one consistent transaction of the database.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, HTTPException, Request

from dashboard.auth import Sessions
from dashboard.consumer import Changes, Consumer
from dashboard.metrics import DashboardMetrics
from dashboard.store import Store
from dashboard.views import JobView
from fedcore.settings import PartySettings


class State(TypedDict):
    """The lifespan state, handed to each request as ``request.state``."""

    settings: PartySettings
    store: Store
    changes: Changes
    consumer: Consumer
    metrics: DashboardMetrics
    sessions: Sessions | None  # None when no token is required (loopback)


async def get_settings(request: Request) -> PartySettings:
    settings: PartySettings = request.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store = request.state.store
    return store


async def get_changes(request: Request) -> Changes:
    changes: Changes = request.state.changes
    return changes


async def get_consumer(request: Request) -> Consumer:
    consumer: Consumer = request.state.consumer
    return consumer


async def get_metrics(request: Request) -> DashboardMetrics:
    metrics: DashboardMetrics = request.state.metrics
    return metrics


SettingsDep = Annotated[PartySettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
ChangesDep = Annotated[Changes, Depends(get_changes)]
ConsumerDep = Annotated[Consumer, Depends(get_consumer)]
MetricsDep = Annotated[DashboardMetrics, Depends(get_metrics)]


def get_job(job_id: str, store: StoreDep) -> JobView:
    job = store.job(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id!r} not found")
    return job


JobDep = Annotated[JobView, Depends(get_job)]
