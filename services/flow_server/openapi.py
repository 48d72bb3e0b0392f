"""OpenAPI documentation of the JSON error responses every route may give."""

from __future__ import annotations

from typing import Any

from flow_server.schemas import ErrorOut

_DESCRIPTIONS = {
    400: "the request is malformed (e.g. a file that does not parse)",
    401: "an API token is required and missing or not valid",
    404: "the named resource does not exist",
    409: "the request conflicts with the current state (e.g. a name in use)",
    413: "the upload is too large",
    415: "the request's content type is not accepted here",
    422: "the request is well-formed but its content is not valid",
    503: "a dependency (database, Kafka consumer) is not available",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route or router: each status with the ``ErrorOut`` JSON body."""
    return {
        status: {"model": ErrorOut, "description": _DESCRIPTIONS.get(status, "an error")}
        for status in statuses
    }
