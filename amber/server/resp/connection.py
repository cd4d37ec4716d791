"""The asyncio shell around the RESP protocol core: one object per socket.

Everything protocol-shaped lives in :mod:`.protocol` (bytes ↔ commands and
replies) and everything command-shaped in :mod:`amber.server.commands`; a
:class:`RespConnection` only moves bytes between them and keeps replies in
order:

- the commands of one read run back to back and their replies leave in one
  ``write``; a write's reply waits (in order) for its commit, while the
  connection goes on submitting further blind writes of the same pipeline,
  so they share a group commit;
- while the session allows it (``Session.fast_reads``), read-only commands
  run straight from the command table, skipping ``execute``'s per-call
  checks: a pipeline of GETs costs little more than parsing and encoding;
  likewise blind writes (``Session.fast_blind_writes``: a plain ``SET k v``)
  go from the parser to the coalescer;
- a command that must see this connection's writes in flight waits for them
  (``DRAIN``), the rest of the pipeline behind it;
- limits: ``max_pipeline`` commands run per turn of the event loop and at
  most that many replies wait for commits before the connection stops
  reading; a client that does not read its replies (or its pub/sub
  messages) is paused, then cut off past ``max_output_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from ssl import SSLContext
from time import perf_counter
from typing import Any

from ..commands import DRAIN, Command, ServerState, Session
from ..commands.coalesce import Pending
from .protocol import ProtocolError, RequestParser, encode_error, encoder_for

__all__ = ["OUT_FLUSH_BYTES", "RespConnection", "RespLimits", "RespServer"]

#: Replies of one run handed to the transport once they reach this many bytes,
#: so that its backpressure (``pause_writing``) stops a pipeline of big reads
#: before their replies pile up in memory.
OUT_FLUSH_BYTES = 256 * 1024

log = logging.getLogger(__name__)


def _address(name: Any) -> str:
    """``ip:port`` of a socket name (IPv4 or IPv6 tuple), as CLIENT LIST shows it."""
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return str(name or "")


@dataclass(frozen=True, slots=True)
class RespLimits:
    """Per-connection limits (the client count and idle timeout are CONFIG settings)."""

    max_request_bytes: int = 64 * 1024 * 1024 + 64 * 1024
    max_pipeline: int = 1024
    #: Unread output (the transport's buffer plus queued replies) past which a
    #: client is cut off: Redis' ``client-output-buffer-limit`` hard limit.
    max_output_bytes: int = 64 * 1024 * 1024
    #: Queued replies past which a client's further commands wait (soft limit).
    output_soft_bytes: int = 4 * 1024 * 1024


class RespConnection(asyncio.Protocol):
    """One client connection; see the module doc."""

    def __init__(self, server: RespServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.parser = RequestParser(server.limits.max_request_bytes)
        self.encode = encoder_for(2)
        self._protocol = 2
        #: Replies in order: encoded bytes, or the task of a write still committing.
        self.replies: deque[Any] = deque()
        #: A command that waits for this connection's writes in flight.
        self.held: list[bytes] | None = None
        self.reading_paused = False
        self.writing_paused = False
        #: Bytes of encoded replies queued in ``replies`` (behind a commit).
        self.queued_bytes = 0
        #: Over ``output_soft_bytes`` queued: run no more commands until it drains.
        self.output_held = False
        self.closed = False
        self.draining = False
        self._scheduled = False
        #: ``_commit_done`` bound once: it is handed to every write's reply.
        self._on_commit = self._commit_done
        #: While ``_process`` runs: the replies it has not written yet (a push
        #: goes behind them, as in Redis' output buffer).
        self._unsent: list[bytes] | None = None

    # -- asyncio.Protocol -------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        # uvloop's transports are no subclass of asyncio.Transport, but behave as one.
        self.transport = transport
        server = self.server
        state = server.state
        state.connections_received += 1
        if server.stopping or state.clients_full():
            state.rejected_connections += 1
            reason = (
                "server is shutting down" if server.stopping else "max number of clients reached"
            )
            transport.write(encode_error(f"ERR {reason}"))
            transport.close()
            self.closed = True
            return
        sock = transport.get_extra_info("socket")
        self.session = Session(
            state,
            peer=_address(transport.get_extra_info("peername")),
            local=_address(transport.get_extra_info("sockname")),
            fd=sock.fileno() if sock is not None else -1,
            push=self._push,
            close=self._kill,
            backlogged=lambda: self.writing_paused or self.output_held,
        )
        server.connections.add(self)
        state.ctx.metrics.connections.labels("resp").inc()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.session is None:
            return
        self.closed = True
        self.server.connections.discard(self)
        self.server.state.ctx.metrics.connections.labels("resp").dec()
        self.session.close()
        self.server.connection_gone(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.session is None:
            return
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self._protocol_error(exc)
            return
        if not self._scheduled:
            self._process()

    def eof_received(self) -> bool | None:
        # Answer what was asked (a pipeline ending in EOF), then close.
        self.draining = True
        self._process()
        return True

    def pause_writing(self) -> None:
        self.writing_paused = True
        self._pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._process()

    # -- running commands ------------------------------------------------------------

    def _process(self) -> None:
        """Run the commands that arrived, in order, until one has to wait."""
        self._scheduled = False
        session, transport = self.session, self.transport
        if session is None or transport is None or self.closed:
            return
        parser, replies, limits = self.parser, self.replies, self.server.limits
        execute, encode = session.execute, self.encode
        # Reads run straight from the command table while the session allows
        # it, blind writes go straight to the coalescer (see the module doc).
        fast, reads = session.fast_reads(), session.state.reads
        blind_writes = session.fast_blind_writes()
        ran: list[Command] = []
        started = perf_counter()
        out: list[bytes] = []
        out_bytes = 0
        self._unsent = out
        budget = limits.max_pipeline
        exhausted = False
        submitted = False
        while not (self.writing_paused or self.output_held or self.closed or session.closing):
            args = self.held
            if args is None:
                if self.server.stopping:
                    exhausted = True
                    break
                try:
                    args = parser.next()
                except ProtocolError as exc:
                    self._unsent = None
                    if out:
                        transport.write(b"".join(out))
                    self._protocol_error(exc)
                    return
                if args is None:
                    exhausted = True
                    break
                if fast is not None:
                    command = fast.get(args[0])
                    if command is not None and command.min_args <= len(args) <= command.max_args:
                        try:
                            reply = command.handler(session, reads, args)
                        except Exception:  # let execute answer (and count) the error
                            reply = execute(args)
                        else:
                            ran.append(command)
                        if replies:
                            self._queue_reply(encode(reply))
                        else:
                            data = encode(reply)
                            out.append(data)
                            out_bytes += len(data)
                            if out_bytes >= OUT_FLUSH_BYTES:
                                out_bytes = self._write_out(out)
                        budget -= 1
                        if budget > 0:
                            continue
                        self._yield_turn()
                        break
                if blind_writes is not None:
                    command = blind_writes.get(args[0])
                    if command is not None and command.min_args <= len(args) <= command.max_args:
                        try:
                            pending = session.submit_blind(command, args, perf_counter())
                        except Exception:  # let execute answer (and count) the error
                            pending = None
                        if pending is not None:
                            session.last_command = command.name
                            submitted = True
                            fast = None  # a read now waits for this write
                            budget -= 1
                            if self._owe(pending):
                                break
                            if budget > 0:
                                continue
                            self._yield_turn()
                            break
            reply = execute(args)
            fast = session.fast_reads()
            blind_writes = session.fast_blind_writes()
            if reply is DRAIN:
                self.held = args
                break
            self.held = None
            if session.protocol != self._protocol:
                self._protocol = session.protocol
                self.encode = encode = encoder_for(session.protocol)
            if type(reply) is Pending or isinstance(reply, asyncio.Future):
                if self._owe(reply):
                    break
            elif replies:
                self._queue_reply(encode(reply))
            else:
                data = encode(reply)
                out.append(data)
                out_bytes += len(data)
                if out_bytes >= OUT_FLUSH_BYTES:
                    out_bytes = self._write_out(out)
            budget -= 1
            if budget <= 0:
                self._yield_turn()
                break
        self._unsent = None
        if submitted:
            session.last_active = time.monotonic()
        if ran:
            # Each read's share of the run (parsing and encoding included).
            run = limits.max_pipeline - budget
            session.ran_reads(ran, (perf_counter() - started) * len(ran) / max(run, 1))
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if replies or self.held is not None or self._scheduled:
            return  # _commit_done calls back
        if session.closing or (exhausted and (self.draining or self.server.stopping)):
            transport.close()
            self.closed = True
        elif self.reading_paused and not self.writing_paused:
            self._resume_reading()

    def _write_out(self, out: list[bytes]) -> int:
        """Hand this run's replies so far to the transport (its backpressure then
        stops the run: ``pause_writing``); returns the bytes left unsent (0)."""
        transport = self.transport
        assert transport is not None
        transport.write(b"".join(out))
        out.clear()
        self._check_output()
        return 0

    def _queue_reply(self, data: bytes) -> None:
        """Queue an encoded reply behind one that waits for its commit."""
        self.replies.append(data)
        self.queued_bytes += len(data)
        if self.queued_bytes >= self.server.limits.output_soft_bytes:
            self.output_held = True  # run and read no more until the queue drains
            self._pause_reading()

    def _check_output(self) -> None:
        """Cut off a client whose unread output passed the hard limit (Redis'
        ``client-output-buffer-limit``); count it."""
        transport = self.transport
        if transport is None or self.closed:
            return
        limits = self.server.limits
        if transport.get_write_buffer_size() + self.queued_bytes > limits.max_output_bytes:
            self.server.state.output_limit_disconnections += 1
            log.warning(
                "closing client %s: it does not read its replies (over %d bytes queued)",
                self.session.peer if self.session else "?",
                limits.max_output_bytes,
            )
            self._kill()

    def _owe(self, reply: Pending | asyncio.Future[Any]) -> bool:
        """Queue a reply that exists once its write commits; True: stop reading for now."""
        self.replies.append(reply)
        if isinstance(reply, Pending):
            reply.notify = self._on_commit
        else:
            reply.add_done_callback(self._on_commit)
        if len(self.replies) < self.server.limits.max_pipeline:
            return False
        self._pause_reading()
        return True

    def _yield_turn(self) -> None:
        """Let other clients run; go on with this pipeline in the next turn."""
        self._pause_reading()
        self._scheduled = True
        asyncio.get_running_loop().call_soon(self._process)

    def _commit_done(self, _future: Any) -> None:
        replies = self.replies
        out: list[bytes] = []
        while replies:
            head = replies[0]
            if type(head) is bytes:
                out.append(replies.popleft())
                self.queued_bytes -= len(head)
                continue
            if not head.done():
                break
            replies.popleft()
            try:
                out.append(self.encode(head.result()))
            except BaseException as exc:  # cancelled at shutdown
                out.append(encode_error(f"ERR {type(exc).__name__}"))
        if out and not self.closed and self.transport is not None:
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))
            self._check_output()
        if self.output_held and self.queued_bytes < self.server.limits.output_soft_bytes:
            self.output_held = False
        if replies or self._scheduled:
            return
        # Go on only where something waits: a held command, paused reading, a
        # close to finish, or bytes past what the last run parsed.
        session = self.session
        if (
            self.held is not None
            or self.reading_paused
            or self.draining
            or self.server.stopping
            or self.parser.buffered
            or session is None
            or session.closing
        ):
            self._process()

    # -- out-of-band -------------------------------------------------------------------

    def _push(self, message: Any) -> None:
        """Send a pub/sub message or watch event, after the replies already owed."""
        transport = self.transport
        if transport is None or self.closed:
            return
        data = self.encode(message)
        if self.replies:
            self._queue_reply(data)  # behind replies waiting for a commit
            self._check_output()
            return
        if self._unsent is not None:
            self._unsent.append(data)  # behind this run's replies
            return
        transport.write(data)
        self._check_output()

    def _kill(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()

    def _protocol_error(self, exc: ProtocolError) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(encode_error(f"ERR {exc}"))
            self.transport.close()
            self.closed = True

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = True
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.closed:
            self.reading_paused = False
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    # -- shutdown ----------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Stop reading; close once the replies already owed are written."""
        self._pause_reading()
        if not self.replies and self.held is None and not self._scheduled:
            self._process()

    @property
    def idle_since(self) -> float:
        return self.session.last_active if self.session is not None else time.monotonic()


class RespServer:
    """The RESP front end of one server: its listening socket and connections."""

    def __init__(self, state: ServerState, limits: RespLimits | None = None) -> None:
        self.state = state
        self.limits = limits or RespLimits()
        self.connections: set[RespConnection] = set()
        self.stopping = False
        self._server: asyncio.Server | None = None
        self._reaper: asyncio.TimerHandle | None = None
        self._all_gone: asyncio.Event | None = None

    async def start(
        self,
        host: str,
        port: int,
        *,
        ssl: SSLContext | None = None,
        ssl_handshake_timeout: float | None = None,
    ) -> asyncio.Server:
        """Listen on ``host:port``; with ``ssl``, every connection speaks TLS first.

        A TLS connection reaches :class:`RespConnection` only once its
        handshake succeeded: a client that sends plain RESP, or presents no
        (or a wrong) certificate when one is required, is dropped by the
        transport without ever running a command.
        """
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RespConnection(self),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=ssl,
            ssl_handshake_timeout=ssl_handshake_timeout if ssl is not None else None,
        )
        self._reaper = loop.call_later(1.0, self._reap_idle)
        return self._server

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def connection_gone(self, connection: RespConnection) -> None:
        if self._all_gone is not None and not self.connections:
            self._all_gone.set()

    def _reap_idle(self) -> None:
        timeout = self.state.config.int("timeout")
        if timeout > 0:
            limit = time.monotonic() - timeout
            for connection in list(self.connections):
                session = connection.session
                if (
                    session is not None
                    and not session.subscriptions
                    and not connection.replies
                    and connection.idle_since < limit
                ):
                    connection._kill()
        if not self.stopping:
            self._reaper = asyncio.get_running_loop().call_later(1.0, self._reap_idle)

    async def shutdown(self, timeout: float = 10.0) -> None:
        """Stop accepting, let connections finish what they started, close them."""
        self.stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        self._all_gone = asyncio.Event()
        for connection in list(self.connections):
            connection.begin_shutdown()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), timeout)
        for connection in list(self.connections):
            connection._kill()
