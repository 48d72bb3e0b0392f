"""The approve and reject buttons of a job's page: forms posted to the dashboard, which forwards
them to this party's flow_server (``POST /flow-server/jobs/{id}/approve|reject``).

The dashboard holds no authority of its own: the form carries the operator's API token, sent on
as ``Authorization: Bearer``, so the flow_server decides whether the request is allowed and
records the decision under that token's name (on a loopback stack without tokens, as the local
operator's). A form posted from another site is refused: the browser's ``Origin`` must be the
dashboard's own.
"""

from __future__ import annotations

from typing import Annotated, Literal

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from dashboard import render
from dashboard.deps import SettingsDep
from dashboard.pages import error_page

router = APIRouter(include_in_schema=False)

FORWARD_TIMEOUT_S = 15.0


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin is not None and origin == own


@router.post("/jobs/{job_id}/{action}", response_class=HTMLResponse)
async def decide(
    job_id: str,
    action: Literal["approve", "reject"],
    request: Request,
    settings: SettingsDep,
    token: Annotated[str, Form(max_length=200)] = "",
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Approve or reject a proposal this party holds for its operator."""
    if not _same_origin(request):
        return error_page(403, "Refused", "This form must be posted from this dashboard's page.")
    headers = {"Authorization": f"Bearer {token.strip()}"} if token.strip() else {}
    body = {"reason": reason.strip() or None} if action == "reject" else None
    url = f"{settings.own_flow_server_url}/jobs/{job_id}/{action}"
    try:
        async with httpx.AsyncClient(timeout=FORWARD_TIMEOUT_S) as client:
            answer = await client.post(url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        return error_page(502, "Not done", f"The flow_server could not be reached: {exc}")
    if answer.is_error:
        try:
            message = str(answer.json().get("message") or answer.text)
        except ValueError:
            message = answer.text
        return error_page(answer.status_code, f"Not done ({action})", message)
    return RedirectResponse(render.job_href(job_id), status_code=303)
