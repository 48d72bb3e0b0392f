"""The web pages: the job list at ``/``, one job at ``/jobs/{job_id}``, ``/compare`` and the task
flow at ``/pipelines``, plus the fragments their script fetches when ``/api/events`` says
something changed.

Pages are self-contained (inline CSS, inline script, inline SVG) and served with a strict
Content-Security-Policy whose nonce is fresh for every response.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Final
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from dashboard import render
from dashboard.api import MAX_COMPARE, MAX_OFFSET, SEARCH_PATTERN, STATE_PATTERN, pipelines_of
from dashboard.deps import StoreDep
from dashboard.schemas import JobAnalysis, JobDetail, JobLogs, JobMetrics, JobSummary
from dashboard.store import Store
from dashboard.views import JobView

router = APIRouter(include_in_schema=False)

PAGE_JOBS: Final = 25
COMPARE_CHOICES: Final = 500  # the newest jobs offered on the compare page

StateQuery = Annotated[str | None, Query(pattern=STATE_PATTERN)]
SearchQuery = Annotated[str | None, Query(pattern=SEARCH_PATTERN)]
OffsetQuery = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
ThresholdQuery = Annotated[float | None, Query(ge=0.0, le=1.0)]


def html(content: str, *, nonce: str | None = None, status_code: int = 200) -> HTMLResponse:
    csp = "default-src 'none'; connect-src 'self'; img-src 'self' data:; base-uri 'none'"
    csp += "; form-action 'self'"
    if nonce is not None:
        csp += f"; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'"
    headers = {"Content-Security-Policy": csp, "Cache-Control": "no-store"}
    return HTMLResponse(content, status_code=status_code, headers=headers)


def error_page(status_code: int, title: str, text: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return html(render.message(title, text, nonce=nonce), nonce=nonce, status_code=status_code)


def _query(state: str | None, q: str | None) -> dict[str, str]:
    return {k: v for k, v in (("state", state), ("q", q)) if v}


def _jobs_fragment(store: Store, state: str | None, q: str | None, offset: int) -> str:
    jobs = store.jobs(state=state, search=q, limit=PAGE_JOBS, offset=offset)
    return render.jobs_table(
        [JobSummary.of(j) for j in jobs],
        total=store.total(state=state, search=q),
        offset=offset,
        limit=PAGE_JOBS,
        query=_query(state, q),
    )


def _job_fragment(job: JobView, threshold: float | None) -> str:
    return render.job_section(
        JobDetail.of(job), JobMetrics.of(job), JobAnalysis.of(job, threshold), JobLogs.of(job)
    )


def _job_not_found(job_id: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return html(render.not_found(job_id, nonce=nonce), nonce=nonce, status_code=404)


@router.get("/", response_class=HTMLResponse)
def jobs_page(
    store: StoreDep,
    state: StateQuery = None,
    q: SearchQuery = None,
    offset: OffsetQuery = 0,
) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    params = urlencode({**_query(state, q), "offset": offset})
    page = render.page(
        "Jobs",
        _jobs_fragment(store, state, q, offset),
        nonce=nonce,
        fragment_url=f"/_fragments/jobs?{params}",
        controls=render.jobs_controls(store.states(), state=state, search=q or ""),
    )
    return html(page, nonce=nonce)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str, store: StoreDep, threshold: ThresholdQuery = None) -> HTMLResponse:
    job = store.job(job_id)
    if job is None:
        return _job_not_found(job_id)
    nonce = secrets.token_urlsafe(16)
    analysis = JobAnalysis.of(job, threshold)
    fragment = f"/_fragments/jobs/{quote(job_id, safe='')}"
    if threshold is not None:
        fragment += f"?{urlencode({'threshold': threshold})}"
    page = render.page(
        f"Job {job_id}",
        _job_fragment(job, threshold),
        nonce=nonce,
        fragment_url=fragment,
        controls=render.confusion_controls(job_id, analysis.threshold),
    )
    return html(page, nonce=nonce)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    store: StoreDep,
    jobs: Annotated[list[str] | None, Query(max_length=MAX_COMPARE)] = None,
) -> HTMLResponse:
    chosen = jobs or []
    found = {j: store.job(j) for j in chosen}
    missing = [j for j, v in found.items() if v is None]
    if missing:
        return error_page(404, "Job not found", f"No job {', '.join(missing)} is known here.")
    views = [v for v in found.values() if v is not None]
    nonce = secrets.token_urlsafe(16)
    params = urlencode([("jobs", j) for j in chosen])
    page = render.page(
        "Compare jobs",
        render.compare_section(
            [JobAnalysis.of(v) for v in views], [JobMetrics.of(v) for v in views]
        ),
        nonce=nonce,
        fragment_url=f"/_fragments/compare?{params}" if chosen else None,
        controls=render.compare_controls(store.job_ids(COMPARE_CHOICES), chosen),
    )
    return html(page, nonce=nonce)


@router.get("/pipelines", response_class=HTMLResponse)
def pipelines_page(store: StoreDep) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    body = render.pipelines_section(pipelines_of(store))
    page = render.page("Task flow", body, nonce=nonce, fragment_url="/_fragments/pipelines")
    return html(page, nonce=nonce)


@router.get("/_fragments/jobs", response_class=HTMLResponse)
def jobs_fragment(
    store: StoreDep,
    state: StateQuery = None,
    q: SearchQuery = None,
    offset: OffsetQuery = 0,
) -> HTMLResponse:
    return html(_jobs_fragment(store, state, q, offset))


@router.get("/_fragments/jobs/{job_id}", response_class=HTMLResponse)
def job_fragment(job_id: str, store: StoreDep, threshold: ThresholdQuery = None) -> HTMLResponse:
    job = store.job(job_id)
    if job is None:
        return html(render.not_found_fragment(job_id), status_code=404)
    return html(_job_fragment(job, threshold))


@router.get("/_fragments/compare", response_class=HTMLResponse)
def compare_fragment(
    store: StoreDep,
    jobs: Annotated[list[str] | None, Query(max_length=MAX_COMPARE)] = None,
) -> HTMLResponse:
    views = [v for v in (store.job(j) for j in jobs or []) if v is not None]
    return html(
        render.compare_section(
            [JobAnalysis.of(v) for v in views], [JobMetrics.of(v) for v in views]
        )
    )


@router.get("/_fragments/pipelines", response_class=HTMLResponse)
def pipelines_fragment(store: StoreDep) -> HTMLResponse:
    return html(render.pipelines_section(pipelines_of(store)))
