"""``/v1/tables``: the table list, range scans, dropping a table.

``GET /v1/tables/{table}`` scans ``[start, end)`` in key order (``reverse``
for descending), optionally under ``prefix`` and filtered by ``where`` — a
JSON list of conditions, ``[["user.age", ">", 30], ["tags", "contains", "x"]]``
(operators ``= != < <= > >= in contains exists prefix``). At most ``limit``
items (default 100, 1 to 10,000; ``limit=0`` is a ``400``: an empty page
could say neither whether more match nor where to go on); ``more`` says whether more match and
``next`` holds the query parameter to pass for the next page (``start`` going
forward, ``end`` in reverse). ``revision`` is the revision the page was read
at: a watch from ``revision + 1`` continues it without a gap.

A table that does not exist scans as empty (tables are created by their first
write); dropping one answers ``404``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response

from ...database import Page
from ...errors import InvalidQuery
from ...model import check_table
from .api import Consistency, HttpApi
from .bodies import json_response
from .problems import problem_responses

__all__ = ["tables_router"]

#: Scans larger than this (or filtered) run on a worker thread, off the event loop.
_INLINE_LIMIT = 1000
MAX_LIMIT = 10_000


class TableInfo(BaseModel):
    name: str
    keys: int
    #: ``strong`` (through the replicator) or ``eventual`` (last writer wins).
    consistency: str = "strong"


class TableMode(BaseModel):
    """``PUT /v1/tables/{table}``'s body: the consistency to create the table with."""

    consistency: Literal["strong", "eventual"]


class TableList(BaseModel):
    tables: list[TableInfo]
    revision: int


class Item(BaseModel):
    key: str
    value: Any


class ScanPage(BaseModel):
    table: str
    items: list[Item]
    more: bool
    revision: int
    next: dict[str, str] | None


def parse_where(text: str | None) -> list[Any] | None:
    """The ``where`` query parameter: a JSON list of conditions."""
    if text is None or not text.strip():
        return None
    try:
        spec = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidQuery(
            f'where must be a JSON list of conditions such as [["age", ">", 30]]: {exc}'
        ) from None
    if not isinstance(spec, list):
        raise InvalidQuery('where must be a JSON list of conditions such as [["age", ">", 30]]')
    return spec


def _no_constant(name: str) -> Any:
    raise InvalidQuery(f"where: {name} is not a JSON value")


def tables_router(api: HttpApi) -> APIRouter:
    """The routes on whole tables."""
    router = APIRouter(tags=["tables"])
    db = api.ctx.db

    @router.get(
        "/v1/tables",
        name="list_tables",
        summary="List the tables",
        responses=problem_responses(400, 503),
    )
    async def list_tables(consistency: Consistency = "linearizable") -> TableList:
        await api.read_point(consistency)
        revision = db.revision
        tables = [
            TableInfo(name=name, keys=len(db.table(name)), consistency=db.consistency(name))
            for name in db.tables()
        ]
        return TableList(tables=tables, revision=revision)

    @router.put(
        "/v1/tables/{table}",
        name="create_table",
        summary="Set a table's consistency when it is created (strong or eventual)",
        response_model=None,
        responses={
            200: {"description": "The table's consistency."},
            **problem_responses(400, 422, 503),
        },
    )
    async def create_table(table: str, body: TableMode) -> Response:
        await asyncio.to_thread(db.table, table, body.consistency)
        return json_response({"name": table, "consistency": db.consistency(table)})

    @router.get(
        "/v1/tables/{table}",
        name="scan",
        summary="Scan a table's keys in order",
        response_model=ScanPage,
        responses=problem_responses(400, 503),
    )
    async def scan(
        table: str,
        *,
        prefix: Annotated[str | None, Query(description="Only keys starting with this.")] = None,
        start: Annotated[str | None, Query(description="First key (inclusive).")] = None,
        end: Annotated[str | None, Query(description="Last key (exclusive).")] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1 to 10,000).")
        ] = 100,
        reverse: bool = False,
        where: Annotated[
            str | None, Query(description='JSON conditions, e.g. [["age", ">", 30]].')
        ] = None,
        consistency: Consistency = "linearizable",
    ) -> Response:
        spec = parse_where(where)
        await api.read_point(consistency, table)
        handle = api.existing(table)
        if handle is None:
            page = Page([], False, db.revision)
        else:

            def read() -> Page:
                return handle.scan(
                    prefix, start=start, end=end, limit=limit, reverse=reverse, where=spec
                )

            if spec is None and limit <= _INLINE_LIMIT:
                page = read()
            else:
                page = await asyncio.get_running_loop().run_in_executor(None, read)
        following: dict[str, str] | None = None
        if page.more and page.items:
            last = page.items[-1][0]
            following = {"end": last} if reverse else {"start": last + "\x00"}
        return json_response(
            {
                "table": table,
                "items": [{"key": key, "value": value} for key, value in page.items],
                "more": page.more,
                "revision": page.revision,
                "next": following,
            }
        )

    @router.delete(
        "/v1/tables/{table}",
        name="drop_table",
        summary="Drop a table and all its keys",
        status_code=204,
        response_model=None,
        responses={204: {"description": "Dropped."}, **problem_responses(400, 404)},
    )
    async def drop_table(table: str) -> Response:
        table = check_table(table, db.config.limits)
        if table not in db.tables():
            raise HTTPException(404, f"table {table!r} does not exist")
        await asyncio.to_thread(db.drop_table, table)
        return Response(status_code=204)

    return router
