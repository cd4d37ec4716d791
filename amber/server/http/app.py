"""``create_app(ctx)``: the FastAPI application of one server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from ... import __version__
from ..context import ServerContext
from .api import HttpApi
from .docs import BEARER, install_docs
from .keys import key_router
from .middleware import FrontMiddleware
from .ops import ops_router
from .problems import install_problem_handlers
from .tables import tables_router
from .txn import openapi_schemas, txn_router
from .ui import console_router
from .watch import watch_router

__all__ = ["close_streams", "create_app"]

_DESCRIPTION = """\
Amber's HTTP/JSON front end: tables of JSON documents with revisions,
compare-and-set (`If-Match` with the revision as `ETag`), RFC 7396 merge
patches, range scans, transactions and a resumable watch stream (SSE).

Every error is `application/problem+json` (RFC 9457).
"""


def create_app(ctx: ServerContext, *, password: Callable[[], str] | None = None) -> FastAPI:
    """The HTTP/JSON app serving ``ctx.db``; run it with uvicorn on the server's loop.

    ``password`` returns the server's current password (empty: none); with
    one, every route but ``/health``, ``/ui`` and ``/docs`` needs ``Authorization: Bearer …``.
    Writes answer only once durable and never block the loop (group commit).
    Call :func:`close_streams` when the server stops, so open watch streams
    end instead of holding up the graceful shutdown.
    """
    api = HttpApi(ctx)
    app = FastAPI(
        title="Amber",
        version=__version__,
        description=_DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url=None,  # install_docs: Swagger UI from local assets, not a CDN
        redoc_url=None,
    )
    app.state.amber = api
    install_problem_handlers(app)
    for router in (
        key_router(api),
        tables_router(api),
        txn_router(api),
        watch_router(api),
        ops_router(api),
        console_router(),
    ):
        app.include_router(router)
    _add_schemas(app)
    install_docs(app, "Amber")
    app.add_middleware(
        FrontMiddleware,
        ctx=ctx,
        body_limit=ctx.db.config.limits.max_batch_bytes,
        password=password,
    )
    return app


def _add_schemas(app: FastAPI) -> None:
    """Put the schemas of bodies read by hand into the generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(openapi_schemas())
            # Every route in the document needs the password when the server
            # has one, but /health (which says so itself).
            components["securitySchemes"] = {"password": BEARER}
            document["security"] = [{"password": []}]
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def close_streams(app: FastAPI) -> None:
    """End the app's open watch streams and refuse new ones (the server is stopping).

    Clients see the stream end and reconnect with ``Last-Event-ID`` to resume.
    """
    api: HttpApi = app.state.amber
    api.stopping.set()
    for stream in list(api.streams):
        stream.close()
