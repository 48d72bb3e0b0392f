"""What the routes get from the lifespan: typed accessors and their ``Annotated`` aliases.

The accessors are ``async`` on purpose: FastAPI runs them on the event loop, the one the consumer
mutates the aggregator on, so a request never reads a view halfway through an update.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from fastapi import Depends, HTTPException, Request

from dashboard.aggregator import Aggregator, JobView
from dashboard.auth import Sessions
from dashboard.consumer import Changes, Consumer
from dashboard.metrics import DashboardMetrics
from fedcore.settings import PartySettings


class State(TypedDict):
    """The lifespan state, handed to each request as ``request.state``."""

    settings: PartySettings
    aggregator: Aggregator
    changes: Changes
    consumer: Consumer
    metrics: DashboardMetrics
    sessions: Sessions | None  # None when no token is required (loopback)


async def get_settings(request: Request) -> PartySettings:
    settings: PartySettings = request.state.settings
    return settings


async def get_aggregator(request: Request) -> Aggregator:
    aggregator: Aggregator = request.state.aggregator
    return aggregator


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
AggregatorDep = Annotated[Aggregator, Depends(get_aggregator)]
ChangesDep = Annotated[Changes, Depends(get_changes)]
ConsumerDep = Annotated[Consumer, Depends(get_consumer)]
MetricsDep = Annotated[DashboardMetrics, Depends(get_metrics)]


async def get_job(job_id: str, aggregator: AggregatorDep) -> JobView:
    job = aggregator.get(job_id)
    if job is None:
        raise HTTPException(status_code=404, detail=f"job {job_id!r} not found")
    return job


JobDep = Annotated[JobView, Depends(get_job)]
