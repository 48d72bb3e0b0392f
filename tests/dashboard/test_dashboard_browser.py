"""The dashboard in headless Chromium against the real two-party stack.

One stack and one browser for the module: the example job is submitted to the guest over HTTP
while the job list is open, then followed on its page, all without a reload. Screenshots go to
``test-artifacts/dashboard/`` (git-ignored); ``DASHBOARD_SCREENSHOTS_TO_DOCS=1`` also copies them
to ``docs/images/`` for the README.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from dashboard.api import MAX_COMPARE
from real_parts import chromium_browser
from tessera.envfiles import local_parties, write_env_files
from tessera.example import PIPELINE_YAML, grant_host_data, make_demo_data, render_job
from tessera.sdk import Dashboard, Tessera
from tessera.stack import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
DOCS_IMAGES = ROOT / "docs" / "images"
GUEST, HOST = "10000", "20000"
JOB_TIMEOUT_MS = 240_000
MAX_ITER = 4  # a short training keeps the module well under two minutes
END_STATES = ("success", "failed", "canceled")


@dataclass(frozen=True)
class Live:
    stack: Stack
    job_text: str
    token: str  # the guest's API token: its dashboard and flow_server require one

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def dashboard(self) -> str:
        return self.stack.party(GUEST).base_url("dashboard")

    @property
    def flow(self) -> str:
        return self.stack.party(GUEST).flow_server_url


@pytest.fixture(scope="module")
def live(kafka_pair: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("browser")
    parties = local_parties([GUEST, HOST], kafka_ports=[b.port for b in kafka_pair])
    env_files = write_env_files(parties, root / "env", data_roots=[root])
    token = f"tsr_{secrets.token_urlsafe(32)}"
    for path in env_files:
        # tokens even on loopback, as off it; the installer's token (registered at start)
        with path.open("a") as env:
            env.write(f"REQUIRE_API_TOKEN=1\nTESSERA_API_TOKEN={token}\n")
    data = make_demo_data(root / "data")
    with Stack(env_files, start_brokers=False) as stack:
        with Tessera(stack.party(HOST).flow_server_url, token=token) as host:
            grant_host_data(host, GUEST, data)
        yield Live(stack, _short_job(render_job(data, root / "output")), token)


def _log_in(page: Any, live: Live, path: str = "/") -> None:
    """Open ``path``: the dashboard sends the browser to its login page first."""
    page.goto(live.dashboard + path)
    page.wait_for_url("**/login?next=**")
    page.get_by_label("API token").fill(live.token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live.dashboard + path)


def _short_job(job_text: str) -> str:
    job = yaml.safe_load(job_text)
    job.setdefault("common-args", {})["max-iter"] = MAX_ITER
    return yaml.safe_dump(job, sort_keys=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright (``real_parts.chromium_browser``)."""
    yield from chromium_browser()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()


def _screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("DASHBOARD_SCREENSHOTS_TO_DOCS") == "1":
        DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGES / name)


def _mark_loaded(page: Any) -> None:
    """Leave a value in the window that a reload would wipe."""
    page.evaluate("window.__loadedOnce = true")


def _not_reloaded(page: Any) -> bool:
    return bool(page.evaluate("window.__loadedOnce === true"))


def _wait_for_the_end(page: Any, live: Live, job_id: str) -> None:
    """Until the page shows the job ended; fails early, with the reason, if the job failed."""
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    done = page.locator('#job-state [data-state="success"]')
    while done.count() == 0:
        with Tessera(live.flow, token=live.token) as flow:
            job = flow.job(job_id)
        assert job.state not in ("failed", "canceled"), job.failure_reason()
        assert time.monotonic() < deadline, f"job {job_id} is still {job.state} on the page"
        page.wait_for_timeout(1000)


def test_logging_in_takes_a_valid_token(live: Live, page: Any) -> None:
    page.goto(live.dashboard + "/jobs/x")
    page.wait_for_url("**/login?next=/jobs/x")
    page.get_by_label("API token").fill("tsr_not-a-token")
    page.get_by_role("button", name="Log in").click()
    assert "not a valid API token" in page.content()
    cookies = page.context.cookies()
    assert not any(c["name"] == "tessera_session" for c in cookies)
    page.get_by_label("API token").fill(live.token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live.dashboard + "/jobs/x")
    (session,) = [c for c in page.context.cookies() if c["name"] == "tessera_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # out of the page's scripts' reach
    assert httpx.get(live.dashboard + "/api/jobs").status_code == 401  # no token, no session


def test_a_running_job_is_followed_live_from_the_list_to_its_page(live: Live, page: Any) -> None:
    _log_in(page, live)
    _mark_loaded(page)
    with Tessera(live.flow, token=live.token) as flow:
        pipeline_id = flow.upload_pipeline(PIPELINE_YAML.read_bytes()).pipeline_id
        job_id = flow.submit_job(pipeline_id, live.job_text.encode()).job_id

    # The job shows up in the list while it runs, without a reload.
    row = page.locator(f'#jobs tr[data-job="{job_id}"]')
    row.wait_for(timeout=30_000)
    first_state = row.locator(".state").first.get_attribute("data-state")
    assert first_state not in END_STATES, first_state
    assert _not_reloaded(page)
    assert "guest" in row.inner_text() and "host" in row.inner_text()
    _screenshot(page, "dashboard-jobs.png")

    # Its page: steps turn green live, on both parties.
    row.locator("a").first.click()
    page.wait_for_url(f"**/jobs/{job_id}")
    _mark_loaded(page)
    states = page.locator("#steps tr[data-step]").evaluate_all(
        "rows => rows.map(r => r.dataset.state)"
    )
    assert states and not all(s == "success" for s in states), states
    _wait_for_the_end(page, live, job_id)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#steps tr[data-step]')]"
        ".every(r => r.dataset.state === 'success')",
        timeout=30_000,
    )
    assert _not_reloaded(page)
    for party in (GUEST, HOST):
        cells = page.locator(f'#steps td[data-party="{party}"] .state')
        assert cells.count() >= 3
        assert set(cells.evaluate_all("cs => cs.map(c => c.dataset.state)")) == {"success"}
    assert page.locator('.dag g.node[data-state="success"]').count() == len(states)
    assert page.locator(".dag line.edge").count() == len(states) - 1  # a chain here

    # The charts say what the API says.
    page.wait_for_function("() => document.getElementById('job-ks').textContent !== '—'")
    with Dashboard(live.dashboard, token=live.token) as dash:
        metrics = dash.metrics(job_id)
    detail = httpx.get(f"{live.dashboard}/api/jobs/{job_id}", headers=live.auth).json()
    (ARTIFACTS / "job.json").write_text(json.dumps(detail, indent=2))
    auc, ks = metrics.auc, metrics.ks
    assert page.locator("#job-auc").inner_text() == f"{auc:.4f}"
    assert page.locator("#job-ks").inner_text() == f"{ks:.4f}"
    assert page.locator("#roc-chart polyline").count() == 1
    assert f"AUC = {auc:.4f}" in page.locator("#roc-chart").inner_text()
    assert page.locator("#ks-chart polyline").count() == 2
    assert f"KS = {ks:.4f}" in page.locator("#ks-chart").inner_text()
    assert page.locator("#loss-chart polyline").count() >= 1
    assert page.locator("#gain-chart polyline").count() == 1
    assert page.locator("#confusion td[data-cell]").count() == 4

    # The logs streamed in, and download.
    assert page.locator("#logs > div").count() > 0
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the log").click()
    assert Path(download.value.path()).read_text().strip()
    page.locator("h1").scroll_into_view_if_needed()
    _screenshot(page, "dashboard-job.png")


def test_the_task_flow_and_compare_views_list_the_job(live: Live, page: Any) -> None:
    _log_in(page, live, "/pipelines")
    page.locator("#pipelines tr").first.wait_for()
    assert "intersect" in page.locator("#pipelines").inner_text()
    # The session's brokers carry other modules' jobs too: compare finished ones, within the cap.
    items = httpx.get(live.dashboard + "/api/jobs", headers=live.auth).json()["items"]
    job_ids = [j["job_id"] for j in items if j["auc"] is not None][:MAX_COMPARE]
    assert job_ids
    query = "&".join(f"jobs={j}" for j in job_ids)
    page.goto(f"{live.dashboard}/compare?{query}")
    assert page.locator("#roc-chart").count() == 1


def test_bad_input_gets_a_404_or_422_page_or_json(live: Live, page: Any) -> None:
    _log_in(page, live)
    response = page.goto(live.dashboard + "/jobs/no-such-job")
    assert response.status == 404 and "No job" in page.content()
    response = page.goto(live.dashboard + "/?offset=-3")
    assert response.status == 422 and "Bad request" in page.content()
    response = page.goto(live.dashboard + "/nowhere")
    assert response.status == 404 and "Traceback" not in page.content()
    api = httpx.get(live.dashboard + "/api/jobs", params={"limit": "many"}, headers=live.auth)
    assert api.status_code == 422 and api.json()["detail"]
    started = time.monotonic()
    nope = httpx.get(live.dashboard + "/api/jobs/nope/analysis", headers=live.auth)
    assert nope.status_code == 404
    assert time.monotonic() - started < 5
