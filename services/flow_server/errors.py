"""API errors: every failure is a 4xx/5xx with a JSON body ``{"code", "message", "where"}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from flow_server.dsl import DslError
from flow_server.states import IllegalTransition

# DSL errors about the document's syntax; every other DSL error is about its content (422)
_SYNTAX = frozenset({"malformed_yaml", "empty_file", "bad_encoding", "invalid_document"})


class ApiError(Exception):
    """An error the API reports as is."""

    def __init__(self, status: int, code: str, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.where = where


class NotFound(ApiError):
    def __init__(self, what: str, ident: str) -> None:
        super().__init__(404, f"{what}_not_found", f"no {what} with id {ident!r}", where=None)


def error_body(code: str, message: str, where: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "where": where}


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, exc.where), status_code=exc.status)


async def _dsl_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DslError)
    status = 413 if exc.code == "document_too_large" else 400 if exc.code in _SYNTAX else 422
    return JSONResponse(error_body(exc.code, exc.message, exc.where), status_code=status)


async def _illegal_transition(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IllegalTransition)
    message = f"{exc.what} is {exc.current}: it cannot go to {exc.new}"
    return JSONResponse(error_body("illegal_transition", message), status_code=409)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"msg": "invalid request", "loc": ()}
    loc = [str(p) for p in first.get("loc", ())]
    where = ".".join(loc) or None
    message = str(first.get("msg", "invalid request"))
    if first.get("type") == "missing" and loc:
        message = f"the request has no '{loc[-1]}' ({loc[0]})"
    return JSONResponse(error_body("invalid_request", message, where), status_code=422)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(DslError, _dsl_error)
    app.add_exception_handler(IllegalTransition, _illegal_transition)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
