"""What a KV text request does to the database.

Buckets are Amber tables. A table comes into being with its first write and
stays (empty, keys deleted or not) until it is dropped, through restarts. So
``CREATE`` of a bucket that does not exist yet commits one batch that puts
and deletes :data:`CREATE_MARKER` in the new table: the table then exists,
holds no key, and is as durable as any write (``OK`` comes once it is). The
batch's compare (the marker key absent) means ``CREATE`` never deletes a key
someone stored under that name. Watchers see the batch as a ``put`` and a
``delete`` of the marker key at one revision.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ...database import Compare
from ...database import Delete as DeleteOp
from ...database import Put as PutOp
from ...errors import AmberError, ConditionFailed
from ...model import check_table
from ..context import ServerContext
from .protocol import (
    NOT_FOUND,
    OK,
    UNKNOWN_COMMAND,
    Create,
    Delete,
    Get,
    Invalid,
    LineTooLong,
    Put,
    Request,
    Unknown,
    render_value,
    reply_error,
    reply_value,
)

__all__ = ["CREATE_MARKER", "Buckets", "execute", "request_name"]

#: The key ``CREATE`` puts and deletes in one batch to bring an empty table into being.
CREATE_MARKER = ".kvtext-create"

_MISSING: Any = object()


class Buckets:
    """The buckets of one database: its tables, created by ``CREATE`` or any write."""

    async def create(self, ctx: ServerContext, name: str) -> None:
        """Make table ``name`` exist, durably; a no-op when it exists."""
        db = ctx.db
        name = check_table(name, db.config.limits)
        if name in db.tables():
            return
        marker = CREATE_MARKER
        # A failed compare: someone stored the marker key meanwhile, so the table exists.
        with contextlib.suppress(ConditionFailed):
            await db.atxn(
                [Compare(name, marker, "exists", "=", False)],
                [PutOp(name, marker, None), DeleteOp(name, marker)],
            )

    def exists(self, ctx: ServerContext, name: str) -> bool:
        return name in ctx.db.tables()


def request_name(request: Request) -> str:
    """The metrics label of a request."""
    match request:
        case Create():
            return "CREATE"
        case Put():
            return "PUT"
        case Get():
            return "GET"
        case Delete():
            return "DELETE"
        case _:
            return "UNKNOWN"


async def execute(ctx: ServerContext, buckets: Buckets, request: Request) -> tuple[bytes, bool]:
    """The reply to ``request`` and whether it succeeded (for metrics).

    A write's ``OK`` comes only once the write is as durable as the
    database's mode promises (group commit, never blocking the loop).
    """
    try:
        match request:
            case Get(bucket, key):
                if not buckets.exists(ctx, bucket):
                    return NOT_FOUND, True
                value = ctx.db.table(bucket).get(key, _MISSING)
                return reply_value("" if value is _MISSING else render_value(value)), True
            case Put(bucket, key, value):
                if not buckets.exists(ctx, bucket):
                    return NOT_FOUND, True
                await ctx.db.table(bucket).aput(key, value)
                return OK, True
            case Delete(bucket, key):
                if not buckets.exists(ctx, bucket):
                    return NOT_FOUND, True
                await ctx.db.table(bucket).adelete(key)
                return OK, True
            case Create(bucket):
                await buckets.create(ctx, bucket)
                return OK, True
            case Unknown():
                return UNKNOWN_COMMAND, False
            case Invalid(reason):
                return reply_error(reason), False
            case LineTooLong(limit):
                return reply_error(f"line longer than {limit} bytes; closing"), False
    except AmberError as exc:
        # Bad input and server-side failures (closed, storage failed) alike:
        # one ERROR line; the guide would crash the connection instead.
        return reply_error(str(exc)), False
    raise AssertionError(f"unhandled request {request!r}")  # pragma: no cover
