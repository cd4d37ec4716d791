"""What the routes of one app share: the server context and cached table handles."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Query
from starlette.responses import Response

from ...database import MAX_CACHED_HANDLES, Table
from ...model import check_table
from ...model.names import join_key
from ..context import ServerContext
from .problems import Misrouted, problem

__all__ = ["Consistency", "HttpApi"]

#: ``?consistency=``: linearizable (the default; in a cluster, after a Raft
#: log barrier) or stale (this replica's state, no round trip).
Consistency = Annotated[
    Literal["linearizable", "stale"],
    Query(description="linearizable (default) or stale: in a cluster, skip the log barrier."),
]


@dataclass
class HttpApi:
    """The state of one HTTP app (several apps, several servers: nothing global)."""

    ctx: ServerContext
    _handles: dict[str, Table] = field(default_factory=dict)
    #: Open watch streams, closed by ``close_streams`` when the server stops.
    streams: set[Any] = field(default_factory=set)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def existing(self, name: str) -> Table | None:
        """The table ``name`` if it exists, without creating anything for a read.

        Reads of tables that do not exist must not make the database keep a
        handle each (a client could grow memory with made-up names).
        """
        handle = self._handles.get(name)
        if handle is None:
            if name not in self.ctx.db.tables():
                # Still validate, so a bad name answers 400, not 404.
                check_table(name, self.ctx.db.config.limits)
                return None
            if len(self._handles) >= MAX_CACHED_HANDLES:
                self._handles.clear()  # dropped tables' handles must not pile up
            handle = self._handles[name] = self.ctx.db.table(name)
        return handle

    def route(self, table: str, key: str, path: str, query: str) -> None:
        """Raise :class:`Misrouted` unless this node's group serves ``table:key`` now.

        Another group's key is a ``307`` to that group's first listed member
        (its HTTP address from the shard map; ``421`` naming its RESP
        address if the map has none); a key whose slot is moving is ``503``
        with ``Retry-After``. Same decision as RESP's MOVED/TRYAGAIN.
        """
        view = self.ctx.shards
        if view is None or not view.sharded:
            return
        slot, verdict, member = view.owner(join_key(table, key).encode())
        if verdict == "here":
            return
        if verdict == "moving":
            raise Misrouted(
                problem(
                    503,
                    "unavailable",
                    f"hash slot {slot} is moving to another group; retry",
                    {"Retry-After": "1"},
                )
            )
        if member is not None and member.http:
            location = f"http://{member.http}{path}" + (f"?{query}" if query else "")
            raise Misrouted(Response(status_code=307, headers={"Location": location}))
        where = f" (RESP {member.host}:{member.port})" if member is not None else ""
        raise Misrouted(
            problem(421, "misdirected", f"hash slot {slot} is served by another group{where}")
        )

    async def read_point(self, consistency: str, table: str | None = None) -> None:
        """Wait, unless stale reads were asked for, until the read is linearizable.

        Not for an eventual table: its reads are this node's state, always.
        """
        if consistency != "stale" and (table is None or table not in self.ctx.db.eventual_tables()):
            await self.ctx.db.abarrier()

    def table(self, name: str) -> Table:
        """The table ``name`` for a write (which creates it)."""
        return self.ctx.db.table(name)
