"""Bad requests answered as a page for browsers and as JSON for the API, never a stack trace.

Paths under ``/api`` (and ``/health``, ``/openapi.json``) keep FastAPI's JSON bodies; every other
path gets a small HTML page saying what was wrong.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from dashboard.pages import error_page

JSON_PREFIXES = ("/api", "/health", "/openapi", "/docs", "/redoc")


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith(JSON_PREFIXES)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _wants_json(request):
        return await http_exception_handler(request, exc)
    if exc.status_code == 404:
        return error_page(404, "Not found", f"Nothing is at {request.url.path}.")
    return error_page(exc.status_code, f"Error {exc.status_code}", str(exc.detail))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if _wants_json(request):
        return await request_validation_exception_handler(request, exc)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
        for e in exc.errors()
    )
    return error_page(422, "Bad request", f"The address is not valid: {problems}.")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
