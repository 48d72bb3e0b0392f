"""The dashboard's ``GET /metrics`` (uvicorn, lifespan and all, fed by the in-memory source):
records read and applied, jobs with a view, open event streams."""

from __future__ import annotations

import httpx
from dashboard_helpers import DONE, OTHER, eventually, job_status, sample_job, serving
from prometheus_client.parser import text_string_to_metric_families

from dashboard.app import create_app
from dashboard.consumer import MemorySource
from fedcore.settings import PartySettings

T0 = 1_700_000_000.0


async def scrape(client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        s.name: s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


async def test_metrics_count_records_jobs_and_event_streams(settings: PartySettings) -> None:
    envelopes = [*sample_job(DONE, T0), job_status(OTHER, "running", T0 + 100)]
    async with serving(create_app(settings, source=MemorySource(envelopes))) as client:

        async def loaded() -> dict[str, float] | None:
            got = await scrape(client)
            return got if got["tessera_dashboard_records_read"] == len(envelopes) else None

        metrics = await eventually(loaded, timeout_s=5)
        assert metrics["tessera_dashboard_jobs"] == 2
        assert 0 < metrics["tessera_dashboard_records_applied"] <= len(envelopes)
        assert metrics["tessera_dashboard_sse_clients"] == 0

        stream = await client.send(client.build_request("GET", "/api/events"), stream=True)
        try:
            # the line iterator is kept: were it collected, its finaliser would close the stream
            lines = stream.aiter_lines()
            await anext(lines)  # the stream is open
            assert (await scrape(client))["tessera_dashboard_sse_clients"] == 1
        finally:
            await stream.aclose()

        async def closed() -> bool | None:
            return (await scrape(client))["tessera_dashboard_sse_clients"] == 0 or None

        await eventually(closed, timeout_s=5)
