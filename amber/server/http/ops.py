"""``/health`` and ``/metrics``: what operators and scrapers read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .api import HttpApi
from .bodies import json_response
from .problems import problem_responses

__all__ = ["ops_router"]


def ops_router(api: HttpApi) -> APIRouter:
    """The operational routes: ``/health`` is open (for probes), ``/metrics`` needs the password."""
    router = APIRouter(tags=["operations"])
    ctx = api.ctx

    @router.get(
        "/health",
        name="health",
        summary="Health: 200 when every job runs, 503 when degraded or closed",
        response_model=None,
        openapi_extra={"security": []},  # open, for probes
        responses={
            200: {"content": {"application/json": {"schema": {"type": "object"}}}},
            503: {"content": {"application/json": {"schema": {"type": "object"}}}},
        },
    )
    async def health() -> Response:
        try:
            report: dict[str, Any] = ctx.health()
        except Exception as exc:  # a closed database: unhealthy, not an error page
            return json_response({"status": "down", "detail": str(exc)}, 503)
        return json_response(report, 200 if report.get("status") == "ok" else 503)

    @router.get(
        "/v1/cluster",
        name="cluster",
        summary="Cluster status: members, leader, term, commit/applied index, lag, health, "
        "and (Redis Cluster mode) the slot map",
        response_model=None,
        responses={
            200: {"content": {"application/json": {"schema": {"type": "object"}}}},
            **problem_responses(404),
        },
    )
    async def cluster() -> Response:
        status = ctx.db.cluster_status()
        if status is None:
            raise HTTPException(404, "this server is not in a cluster (start it with --node-id)")
        if ctx.shards is not None:  # Redis Cluster mode: the slot map this group holds
            return json_response({**status, "slots": ctx.shards.shard_state(dict(status)).to_doc()})
        return json_response(status)

    @router.get(
        "/metrics",
        name="metrics",
        summary="Prometheus metrics (text exposition format)",
        response_model=None,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
    )
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
