"""Errors as ``application/problem+json`` (RFC 9457), from the one wire-error table.

Every error response of the HTTP front end is a problem document::

    {"type": "/problems/condition-failed", "title": "Precondition Failed",
     "status": 412, "detail": "…what was wrong, where, what to do…", …extensions}

``type`` is the slug of :mod:`amber.server.wire_errors` (shared with RESP)
as a relative URI; extensions carry what a client needs to act (``table``,
``key``, ``oldest_available``, ``last_revision``, ``path``, ``errors``).
Bad input is always a 4xx: FastAPI's own validation errors become 400
(malformed query, path, header or JSON) or 422 (a well-formed body of the
wrong shape); only a bug or a storage failure is a 5xx.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ... import errors
from ..wire_errors import wire_error

__all__ = [
    "PROBLEM_JSON",
    "Problem",
    "install_problem_handlers",
    "problem",
    "problem_body",
    "problem_of",
    "problem_responses",
]

log = logging.getLogger("amber.server.http")

PROBLEM_JSON = "application/problem+json"

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

#: Slugs for statuses raised by the framework itself (routing, media types).
_STATUS_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "too-large",
    415: "unsupported-media-type",
    422: "invalid-value",
}


class Problem(BaseModel):
    """An RFC 9457 problem document (the schema of every error response)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: these statuses answer a problem document."""
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}},
        }
        for status in statuses
    }


def problem(
    status: int, slug: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    """A problem+json response."""
    body = {
        "type": f"/problems/{slug}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        **extra,
    }
    return Response(_dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def problem_fields(exc: BaseException) -> dict[str, Any]:
    """The extension members that let a client act on ``exc``."""
    if isinstance(exc, errors.NotFound):
        return {"table": exc.table, "key": exc.key}
    if isinstance(exc, errors.ConditionFailed):
        return {k: v for k, v in (("table", exc.table), ("key", exc.key)) if v is not None}
    if isinstance(exc, errors.Compacted):
        return {"requested": exc.requested, "oldest_available": exc.oldest_available}
    if isinstance(exc, errors.Lagged):
        return {"last_revision": exc.last_revision}
    if isinstance(exc, errors.InvalidValue):
        return {"path": exc.path}
    return {}


def problem_body(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The status and problem document of an Amber error (also used inside SSE)."""
    wire = wire_error(exc)
    # Amber's own messages are written for clients; anything else may leak internals.
    detail = str(exc) if isinstance(exc, errors.AmberError) else ""
    body = {
        "type": f"/problems/{wire.slug}",
        "title": HTTPStatus(wire.http_status).phrase,
        "status": wire.http_status,
        "detail": detail or "internal error; the server log has the details",
        **problem_fields(exc),
    }
    return wire.http_status, body


def problem_of(exc: errors.AmberError) -> Response:
    """The problem+json response for an Amber error."""
    status, body = problem_body(exc)
    return Response(_dumps(body), status, media_type=PROBLEM_JSON)


def _validation_status(exc: RequestValidationError) -> int:
    for error in exc.errors():
        location = error.get("loc", ())
        if error.get("type") == "json_invalid" or (location and location[0] != "body"):
            return 400
    return 422


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [str(part) for part in error.get("loc", ())], "msg": str(error.get("msg", ""))}
        for error in exc.errors()
    ]


def _summary(errors_: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors_[:5]]
    more = f" (and {len(errors_) - 5} more)" if len(errors_) > 5 else ""
    return "; ".join(parts) + more


class Misrouted(Exception):
    """This node does not serve a key's hash slot now; ``response`` says where to go."""

    def __init__(self, response: Response) -> None:
        super().__init__("misrouted")
        self.response = response


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error the app can raise to a problem+json response."""

    async def on_amber_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.AmberError)
        if wire_error(exc).http_status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return problem_of(exc)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        found = _validation_errors(exc)
        status = _validation_status(exc)
        slug = "invalid-argument" if status == 400 else "invalid-value"
        return problem(status, slug, _summary(found), errors=found)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        status = exc.status_code
        headers = dict(exc.headers) if exc.headers else None
        if status < 400:
            return Response(status_code=status, headers=headers)
        slug = _STATUS_SLUGS.get(status, "error" if status < 500 else "internal")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).description
        return problem(status, slug, detail, headers)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return problem(500, "internal", "internal error; the server log has the details")

    async def on_misrouted(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Misrouted)
        return exc.response

    app.add_exception_handler(Misrouted, on_misrouted)
    app.add_exception_handler(errors.AmberError, on_amber_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
