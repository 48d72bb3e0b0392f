"""The web pages: the job list at ``/`` and one job at ``/jobs/{job_id}``, plus the fragments
their script fetches when ``/api/events`` says something changed.

Pages are self-contained (inline CSS, inline script, inline SVG) and served with a strict
Content-Security-Policy whose nonce is fresh for every response.
"""

from __future__ import annotations

import secrets
from typing import Final
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from dashboard import render
from dashboard.aggregator import Aggregator, JobView
from dashboard.deps import AggregatorDep
from dashboard.schemas import JobDetail, JobMetrics, JobSummary

router = APIRouter(include_in_schema=False)

PAGE_JOBS: Final = 100


def _html(content: str, *, nonce: str | None = None, status_code: int = 200) -> HTMLResponse:
    csp = "default-src 'none'; connect-src 'self'; img-src 'self' data:; base-uri 'none'"
    if nonce is not None:
        csp += f"; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'"
    headers = {"Content-Security-Policy": csp, "Cache-Control": "no-store"}
    return HTMLResponse(content, status_code=status_code, headers=headers)


def _jobs_fragment(aggregator: Aggregator) -> str:
    jobs = aggregator.jobs()
    return render.jobs_table([JobSummary.of(j) for j in jobs[:PAGE_JOBS]], total=len(jobs))


def _job_fragment(job: JobView) -> str:
    return render.job_section(JobDetail.of(job), JobMetrics.of(job))


def _job_not_found(job_id: str) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    return _html(render.not_found(job_id, nonce=nonce), nonce=nonce, status_code=404)


@router.get("/", response_class=HTMLResponse)
async def jobs_page(aggregator: AggregatorDep) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    body = _jobs_fragment(aggregator)
    return _html(
        render.page("Jobs", body, nonce=nonce, fragment_url="/_fragments/jobs"), nonce=nonce
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(job_id: str, aggregator: AggregatorDep) -> HTMLResponse:
    job = aggregator.get(job_id)
    if job is None:
        return _job_not_found(job_id)
    nonce = secrets.token_urlsafe(16)
    html = render.page(
        f"Job {job_id}",
        _job_fragment(job),
        nonce=nonce,
        fragment_url=f"/_fragments/jobs/{quote(job_id, safe='')}",
    )
    return _html(html, nonce=nonce)


@router.get("/_fragments/jobs", response_class=HTMLResponse)
async def jobs_fragment(aggregator: AggregatorDep) -> HTMLResponse:
    return _html(_jobs_fragment(aggregator))


@router.get("/_fragments/jobs/{job_id}", response_class=HTMLResponse)
async def job_fragment(job_id: str, aggregator: AggregatorDep) -> HTMLResponse:
    job = aggregator.get(job_id)
    if job is None:
        return _html(render.not_found_fragment(job_id), status_code=404)
    return _html(_job_fragment(job))
