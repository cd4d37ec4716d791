"""The asyncio shell around the KV text protocol: one protocol object per connection.

Requests of one connection run in the order they arrived and their replies
leave in that order; a client may pipeline. Reads answer at once; a write's
reply waits for its commit, so the requests behind it wait too (that is what
keeps a ``GET`` after a ``PUT`` on the same connection seeing the ``PUT``).

Bounded: at most ``max_line`` bytes of an unfinished line; reading pauses
while ``_MAX_QUEUED`` requests wait, and while the client does not read its
replies (transport flow control).

Closing the ``asyncio.Server`` returned by :func:`start_kvtext` stops new
connections; open ones finish the request in hand and are closed within
about ``_CLOSE_POLL`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import cast

from ..context import ServerContext
from .protocol import LineReader, LineTooLong, Request, reply_error
from .session import Buckets, execute, request_name

__all__ = ["start_kvtext"]

log = logging.getLogger("amber.server.kvtext")

_MAX_QUEUED = 1024
_CLOSE_POLL = 0.1


_FULL_REPLY = b"ERROR max number of clients reached\r\n"

_LOCKED_REPLY = (
    b"ERROR the server requires a password and the KV text protocol has no way to give one; "
    b"use the Redis protocol or HTTP\r\n"
)


class _Connection(asyncio.Protocol):
    """One client: feeds the line reader, runs requests in order, writes replies."""

    def __init__(self, frontend: _KvTextFrontend) -> None:
        self.frontend = frontend
        self.reader = LineReader(frontend.max_line)
        self.queue: deque[Request] = deque()
        self.transport: asyncio.Transport | None = None
        self.worker: asyncio.Task[None] | None = None
        self.reading_paused = False
        #: Stop now: the connection is lost or a request asked to close.
        self.closing = False
        #: Close once the queue is answered (EOF, or the server closing).
        self.close_after = False
        self.can_write = asyncio.Event()
        self.can_write.set()

    # -- asyncio callbacks ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        if self.frontend.full():
            # Refused, as RESP refuses past maxclients: a descriptor each.
            self.closing = True
            self.transport.write(_FULL_REPLY)
            self.transport.close()
            return
        self.frontend.connections.add(self)
        self.frontend.ctx.metrics.connections.labels("kvtext").inc()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.queue.clear()
        self.can_write.set()
        if self in self.frontend.connections:
            self.frontend.connections.discard(self)
            self.frontend.ctx.metrics.connections.labels("kvtext").dec()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        if self.frontend.locked():
            # The protocol has no AUTH: with a password set, it must not serve.
            self.closing = True
            assert self.transport is not None
            self.transport.write(_LOCKED_REPLY)
            self.transport.close()
            return
        self.queue.extend(self.reader.feed(data))
        if len(self.queue) >= _MAX_QUEUED and not self.reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self.reading_paused = True
        if self.queue and self.worker is None:
            self.worker = asyncio.get_running_loop().create_task(self._work())

    def eof_received(self) -> bool:
        # Answer what was asked, then close (keep the transport open until then).
        self.close_when_idle()
        return True

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    # -- the worker -----------------------------------------------------------------------

    async def _work(self) -> None:
        ctx, buckets = self.frontend.ctx, self.frontend.buckets
        observe = ctx.metrics.observe
        try:
            while self.queue and not self.closing:
                request = self.queue.popleft()
                started = time.perf_counter()
                try:
                    reply, ok = await execute(ctx, buckets, request)
                except Exception:
                    log.exception("kvtext request %r failed", request)
                    reply, ok = reply_error("internal error; closing the connection"), False
                    self.closing = True
                observe("kvtext", request_name(request), time.perf_counter() - started, ok)
                if isinstance(request, LineTooLong):
                    self.closing = True
                self._write(reply)
                if not self.can_write.is_set():
                    await self.can_write.wait()
                if self.reading_paused and len(self.queue) < _MAX_QUEUED // 2:
                    self._resume_reading()
        finally:
            self.worker = None
            if self.closing or (self.close_after and not self.queue):
                self._close()

    def _write(self, reply: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(reply)

    def _resume_reading(self) -> None:
        self.reading_paused = False
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def close_when_idle(self) -> None:
        """Close once the requests already received are answered."""
        self.close_after = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        if self.worker is None:
            self._close()


class _KvTextFrontend:
    """The shared state of one KV text listener."""

    def __init__(
        self,
        ctx: ServerContext,
        max_line: int,
        locked: Callable[[], bool] | None = None,
        full: Callable[[], bool] | None = None,
    ) -> None:
        self.ctx = ctx
        self.max_line = max_line
        #: True while the server requires a password (the protocol has none).
        self.locked: Callable[[], bool] = locked or (lambda: False)
        #: True while the server has as many connections as it takes (``maxclients``).
        self.full: Callable[[], bool] = full or (lambda: False)
        self.buckets = Buckets()
        self.connections: set[_Connection] = set()
        self.closer: asyncio.Task[None] | None = None

    async def close_clients_when_closed(self, server: asyncio.Server) -> None:
        """Close every connection once ``server`` stops serving (see the module doc)."""
        while server.is_serving():
            await asyncio.sleep(_CLOSE_POLL)
        for connection in list(self.connections):
            connection.close_when_idle()


async def start_kvtext(
    ctx: ServerContext,
    host: str,
    port: int,
    *,
    max_line: int | None = None,
    locked: Callable[[], bool] | None = None,
    full: Callable[[], bool] | None = None,
    counters: list[Callable[[], int]] | None = None,
) -> asyncio.Server:
    """Listen for KV text clients on ``host:port`` (0: a free port) on the running loop.

    ``max_line`` caps one request line in bytes (default: the largest value
    plus 4 KiB for the command words). While ``locked()`` is true (the server
    has a password; this protocol has no way to give one) every request is
    answered with an error and the connection closed. While ``full()`` is
    true a new connection is refused the same way. A function counting the
    open connections is appended to ``counters``. Close the returned server
    to stop.
    """
    limit = max_line if max_line is not None else ctx.db.config.limits.max_value_bytes + 4096
    frontend = _KvTextFrontend(ctx, limit, locked, full)
    if counters is not None:
        counters.append(lambda: len(frontend.connections))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(frontend), host, port)
    # The server holds the factory, the factory the front end, which holds the task.
    frontend.closer = loop.create_task(frontend.close_clients_when_closed(server))
    return server
