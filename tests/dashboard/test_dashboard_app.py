"""The app over HTTP (uvicorn, lifespan and all) fed by the in-memory source: API, pages, health."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from dashboard_helpers import (
    BROKEN,
    DONE,
    EVIL,
    GUEST,
    LOSSES,
    eventually,
    job_status,
    metric,
    sample_job,
    serving,
)

from dashboard.app import create_app
from dashboard.consumer import MemorySource
from fedcore.settings import PartySettings

T0 = 1_700_000_000.0


def _source() -> MemorySource:
    return MemorySource(
        [
            *sample_job(DONE, T0),
            job_status(BROKEN, "failed", T0 + 100, reason="host <b>crashed</b>"),
            # a peer may name its pipeline anything: it is escaped like every value
            job_status(EVIL, "running", T0 + 200, pipeline="<script>alert(1)</script>"),
        ]
    )


async def _loaded(client: httpx.AsyncClient, n: int = 3) -> None:
    async def probe() -> bool | None:
        return (await client.get("/api/jobs")).json()["total"] == n or None

    await eventually(probe, timeout_s=5)


async def test_jobs_are_listed_newest_first_with_paging_and_a_state_filter(
    settings: PartySettings,
) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        page = (await client.get("/api/jobs")).json()
        assert [j["job_id"] for j in page["items"]] == [EVIL, BROKEN, DONE]
        done = page["items"][2]
        assert (done["state"], done["auc"], done["ks"]) == ("success", 0.8125, 0.5)
        assert (done["steps_succeeded"], done["steps_total"]) == (3, 3)

        page = (await client.get("/api/jobs", params={"limit": 1, "offset": 1})).json()
        assert [j["job_id"] for j in page["items"]] == [BROKEN]
        assert (page["total"], page["limit"], page["offset"]) == (3, 1, 1)

        page = (await client.get("/api/jobs", params={"state": "failed"})).json()
        assert [(j["job_id"], j["reason"]) for j in page["items"]] == [
            (BROKEN, "host <b>crashed</b>")
        ]


async def test_one_job_its_metrics_and_logs(settings: PartySettings) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        detail = (await client.get(f"/api/jobs/{DONE}")).json()
        assert [(s["name"], s["state"]) for s in detail["steps"]] == [
            ("intersect", "success"),
            ("train", "success"),
            ("evaluate", "success"),
        ]
        assert {t["party"] for t in detail["steps"][0]["tasks"]} == {"10000", "20000"}

        metrics = (await client.get(f"/api/jobs/{DONE}/metrics")).json()
        assert (metrics["auc"], metrics["ks"]) == (0.8125, 0.5)
        assert [p["value"] for p in metrics["loss"][0]["points"]] == LOSSES
        assert metrics["curves"][0]["name"] == "roc"

        logs = (await client.get(f"/api/jobs/{DONE}/logs")).json()
        assert [x["line"] for x in logs["lines"]] == ["epoch 4 done"]


@pytest.mark.parametrize(
    "path", ["/api/jobs/nope", "/api/jobs/nope/metrics", "/api/jobs/nope/logs"]
)
async def test_an_unknown_job_is_a_404_with_a_json_reason(
    settings: PartySettings, path: str
) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json() == {"detail": "job 'nope' not found"}


@pytest.mark.parametrize(
    "params",
    [{"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"offset": "-1"}, {"state": "RUN!"}],
)
async def test_a_malformed_query_is_a_422_naming_the_parameter(
    settings: PartySettings, params: dict[str, str]
) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        response = await client.get("/api/jobs", params=params)
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/json"
        assert response.json()["detail"][0]["loc"] == ["query", next(iter(params))]


async def test_the_jobs_page_is_self_contained_html_listing_the_jobs(
    settings: PartySettings,
) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        response = await client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        html = response.text
        assert '<html lang="en">' in html
        assert f'href="/jobs/{DONE}"' in html and "success</span>" in html and "0.8125" in html
        assert "10000 · guest<br>20000 · host" in html
        # No external assets, and the script carries this response's CSP nonce.
        assert not re.search(r"<(link|img)\b|\bsrc=", html)
        nonce = re.search(
            r"script-src 'nonce-([^']+)'", response.headers["content-security-policy"]
        )
        assert nonce is not None and f'<script nonce="{nonce[1]}">' in html
        # Values from records are escaped.
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html

        fragment = await client.get("/_fragments/jobs")
        assert fragment.status_code == 200 and f'href="/jobs/{DONE}"' in fragment.text
        assert "<html" not in fragment.text


async def test_the_job_page_shows_steps_per_party_metrics_and_a_loss_chart(
    settings: PartySettings,
) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        html = (await client.get(f"/jobs/{DONE}")).text
        assert f"<h1>Job {DONE}</h1>" in html
        assert '<th scope="col">Party 10000</th>' in html and '<th scope="row">train</th>' in html
        assert re.search(r'<svg role="img"[^>]*>', html) and "<polyline" in html
        assert "0.812500" in html  # the auc row of the metrics table

        missing = await client.get("/jobs/nope")
        assert missing.status_code == 404 and "No job <code>nope</code>" in missing.text
        assert (await client.get("/_fragments/jobs/nope")).status_code == 404
        assert "<polyline" in (await client.get(f"/_fragments/jobs/{DONE}")).text


async def test_records_arriving_later_show_up(settings: PartySettings) -> None:
    source = _source()
    async with serving(create_app(settings, source=source)) as client:
        await _loaded(client)
        source.publish(metric(DONE, "evaluate", GUEST, "precision", 0.75, time.time(), None))

        async def probe() -> dict[str, float] | None:
            scalars = (await client.get(f"/api/jobs/{DONE}/metrics")).json()["scalars"]
            found = {m["name"]: m["value"] for m in scalars}
            return found if "precision" in found else None

        assert (await eventually(probe, timeout_s=5))["precision"] == 0.75


async def test_health_is_ok_once_the_consumer_follows_its_source(settings: PartySettings) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        response = await client.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert (body["status"], body["party_id"], body["jobs"]) == ("ok", GUEST, 3)
        assert body["consumer"]["records"] == len(_source()._log)


async def test_search_analysis_log_download_compare_and_task_flow(settings: PartySettings) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        page = (await client.get("/api/jobs", params={"q": "D0E"})).json()
        assert [j["job_id"] for j in page["items"]] == [DONE]
        assert page["states"] == {"failed": 1, "running": 1, "success": 1}
        assert page["items"][0]["pipeline"] == ["intersect", "train", "evaluate"]

        curves = (await client.get(f"/api/jobs/{DONE}/analysis")).json()
        assert curves["roc"]["tpr"] == [0.0, 0.75, 1.0] and curves["ks_point"]["ks"] == 0.25

        text = await client.get(f"/api/jobs/{DONE}/logs.txt")
        assert text.status_code == 200 and "epoch 4 done" in text.text
        assert "attachment" in text.headers["content-disposition"]

        compared = await client.get("/api/compare", params=[("jobs", DONE), ("jobs", BROKEN)])
        assert [a["job_id"] for a in compared.json()] == [DONE, BROKEN]
        assert (await client.get("/api/compare", params={"jobs": "nope"})).status_code == 404

        flow = (await client.get("/api/pipelines")).json()
        assert [s["name"] for s in flow["jobs"][-1]["steps"]] == ["intersect", "train", "evaluate"]
        for path in ("/pipelines", f"/compare?jobs={DONE}&jobs={BROKEN}", "/?state=success&q=d0e"):
            response = await client.get(path)
            assert response.status_code == 200, path
        assert 'id="roc-chart"' in (await client.get(f"/compare?jobs={DONE}")).text


@pytest.mark.parametrize(
    ("path", "status", "kind"),
    [
        ("/?offset=-1", 422, "text/html"),
        ("/?state=NOT%20A%20STATE", 422, "text/html"),
        (f"/jobs/{DONE}?threshold=2", 422, "text/html"),
        ("/compare?jobs=nope", 404, "text/html"),
        ("/no/such/page", 404, "text/html"),
        ("/api/jobs?limit=0", 422, "application/json"),
        (f"/api/jobs/{DONE}/analysis?threshold=x", 422, "application/json"),
        ("/api/nothing", 404, "application/json"),
    ],
)
async def test_bad_input_gets_a_page_or_json_never_a_traceback(
    settings: PartySettings, path: str, status: int, kind: str
) -> None:
    async with serving(create_app(settings, source=_source())) as client:
        await _loaded(client)
        response = await client.get(path)
        assert response.status_code == status
        assert response.headers["content-type"].startswith(kind)
        assert "Traceback" not in response.text
