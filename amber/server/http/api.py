"""What the routes of one app share: the server context and cached table handles."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Query

from ...database import MAX_CACHED_HANDLES, Table
from ...model import check_table
from ..context import ServerContext

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

    async def read_point(self, consistency: str) -> None:
        """Wait, unless stale reads were asked for, until the read is linearizable."""
        if consistency != "stale":
            await self.ctx.db.abarrier()

    def table(self, name: str) -> Table:
        """The table ``name`` for a write (which creates it)."""
        return self.ctx.db.table(name)
