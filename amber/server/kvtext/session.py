"""What a KV text request does to the database.

Buckets are Amber tables. Amber creates a table on its first write and has
no "empty table" of its own, so ``CREATE`` records the bucket in this
server's :class:`Buckets` until a ``PUT`` makes it a real table: a bucket
exists when it was created here or when the table exists in the database.
An empty bucket is therefore not persistent (as in the guide, where buckets
live in memory); a bucket holding keys is an ordinary, durable table.
"""

from __future__ import annotations

from typing import Any

from ...errors import AmberError
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

__all__ = ["Buckets", "execute", "request_name"]

_MISSING: Any = object()


class Buckets:
    """The buckets one server created and that hold no key yet."""

    def __init__(self) -> None:
        self._created: set[str] = set()

    def create(self, ctx: ServerContext, name: str) -> None:
        self._created.add(check_table(name, ctx.db.config.limits))

    def exists(self, ctx: ServerContext, name: str) -> bool:
        return name in self._created or name in ctx.db.tables()


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
                buckets.create(ctx, bucket)
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
