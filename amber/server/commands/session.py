"""One client's session: authentication, MULTI, subscriptions, and running commands.

A front end makes a :class:`Session` per connection and hands it each
command; ``execute`` answers with

- a reply (most commands, synchronously: reads never wait);
- an ``asyncio.Future`` resolving to the reply, for a write: the reply
  exists only once the write is as durable as the database's mode promises;
- :data:`DRAIN`: the command must wait until this session's writes in flight
  are answered (it reads, and must see them); call ``execute`` again then.

**Order.** One session's commands take effect in the order sent, whatever
route each takes. A write reaches the database by one of two routes: the
**coalescer** (blind writes: SET, MSET, DEL, JSON.SET at the root … — a FIFO
of batches, see :mod:`.coalesce`) or a **solo commit** (a read-modify-write,
a MULTI block, a write the coalescer cannot carry: its own task, which may
wait for other writers and retry). Only the coalescer keeps order between
writes in flight, so (checked in :meth:`Session.execute`):

- a read waits until none of the session's writes is in flight (it must see
  them);
- a coalesced write may join while the session's writes in flight are all
  coalesced (they share one group commit and keep their order);
- a solo commit starts only when nothing of the session is in flight, and
  everything after it waits for it.

Waiting is :data:`DRAIN`: the front end holds the command (and the rest of
the pipeline behind it) and runs it again once the writes are answered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ...cluster.slots import key_slot
from ...errors import AmberError, ConditionFailed
from ..wire_errors import wire_error
from .coalesce import Pending, coalescible
from .keys import split_key
from .registry import REGISTRY, Command, CommandError, Entries, Later
from .replies import NULL_ARRAY, ErrorReply, Push, Simple
from .scope import MustDrain, Scope
from .state import ServerState

__all__ = ["DRAIN", "QUEUED", "ExecPlan", "Session", "error_reply"]

log = logging.getLogger(__name__)

DRAIN: Any = object()
QUEUED = Simple("QUEUED")
#: Runs of a read-modify-write that lost to a concurrent writer before giving up.
MAX_ATTEMPTS = 64

#: A MULTI block queues at most this many commands: EXEC runs them all in one
#: turn of the event loop (20,000 INCRs of one key held every other client
#: 1 s, 50,000 6 s; 10,000 0.25 s).
MAX_MULTI_COMMANDS = 10_000

_PUBSUB_CONTEXT_ERROR = (
    "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
    "are allowed in this context"
)


class ExecPlan:
    """What EXEC hands back: its reply, how to run it again, when it is aborted."""

    __slots__ = ("aborted", "reply", "rerun")

    def __init__(
        self, reply: Any, rerun: Callable[[Scope], Any], aborted: Callable[[], bool]
    ) -> None:
        self.reply = reply
        self.rerun = rerun
        self.aborted = aborted


def error_reply(exc: BaseException) -> ErrorReply:
    """The error reply for an exception a command raised."""
    if isinstance(exc, CommandError):
        return ErrorReply(exc.reply_text())
    if isinstance(exc, AmberError):
        return ErrorReply(f"{wire_error(exc).resp_prefix} {exc}")
    # Not an Amber error: a bug or a host failure. Its text may name paths or
    # internals of the host, so it goes to the log only, never to the client.
    log.error("a command failed unexpectedly", exc_info=exc)
    return ErrorReply("ERR internal error; the server log has the details")


class Session:
    """A client's state; see the module doc."""

    def __init__(
        self,
        state: ServerState,
        *,
        peer: str = "",
        local: str = "",
        fd: int = -1,
        push: Callable[[Any], None] | None = None,
        close: Callable[[], None] | None = None,
        backlogged: Callable[[], bool] | None = None,
    ) -> None:
        self.state = state
        self.id = state.next_id()
        self.peer = peer
        #: This end of the connection (CLIENT LIST's ``laddr``) and its socket's fd.
        self.local = local
        self.fd = fd
        self.name = ""
        self.lib_name = ""
        self.lib_ver = ""
        self.protocol = 2
        self.authenticated = state.password is None
        self.created = time.monotonic()
        self.last_active = self.created
        self.last_command = ""
        #: Queued (command, args) while in MULTI, else None.
        self.multi: list[tuple[Command, list[bytes]]] | None = None
        self.multi_failed = False
        #: Bytes of arguments in ``multi`` (bounded: see :meth:`_queue`).
        self.multi_bytes = 0
        #: WATCHed (table, key) -> mod_revision seen (0: absent).
        self.watched: dict[tuple[str, str], int] = {}
        self.channels: set[bytes] = set()
        self.patterns: set[bytes] = set()
        #: AMBER.WATCH streams: spec -> the task pushing its events.
        self.watches: dict[bytes, asyncio.Task[None]] = {}
        #: Watch channels (``__amber_watch__:…``, in ``channels`` or ``patterns``):
        #: (is a pattern, name) -> the task pushing their messages.
        self.channel_watches: dict[tuple[bool, bytes], asyncio.Task[None]] = {}
        #: Writes submitted and not answered yet; and how many of those are solo
        #: commits (not coalesced): see "Order" in the module doc.
        self.pending = 0
        self.pending_solo = 0
        #: Set by QUIT: the front end closes after the reply.
        self.closing = False
        #: ``READONLY``: this replica's state without a log barrier (clusters only).
        self.stale_reads = False
        self._push = push
        self._close = close
        self._backlogged = backlogged
        state.sessions[self.id] = self

    # -- the front end's side ----------------------------------------------------

    @property
    def subscriptions(self) -> int:
        return len(self.channels) + len(self.patterns) + len(self.watches)

    def push(self, message: Any) -> None:
        """Send an out-of-band message (pub/sub, watch event) to the client."""
        if self._push is not None:
            self._push(message)

    def backlogged(self) -> bool:
        """Whether the client is not reading what was pushed (watch pumps wait then)."""
        return self._backlogged is not None and self._backlogged()

    def kill(self) -> None:
        """Close the client's connection (CLIENT KILL)."""
        self.closing = True
        if self._close is not None:
            self._close()

    def close(self) -> None:
        """The connection is gone: drop subscriptions and watches; idempotent."""
        self.state.sessions.pop(self.id, None)
        self.state.pubsub.drop_session(self)
        for task in self.watches.values():
            task.cancel()
        self.watches.clear()
        self.multi = None
        self.watched.clear()

    # -- running commands -----------------------------------------------------------

    def _queue(self, command: Command, args: list[bytes]) -> Any:
        """Queue a command of a MULTI block, within bounds.

        A block is bounded per connection, in commands (``MAX_MULTI_COMMANDS``)
        and in argument bytes (the largest transaction, ``max_batch_bytes``):
        unbounded, one client held gigabytes of queued values. Past either the
        command is refused and the block fails (EXEC answers EXECABORT); what
        was queued is released at once and nothing more is kept.
        """
        assert self.multi is not None
        if self.multi_failed:
            self.multi.clear()  # EXEC aborts anyway: keep nothing
            return QUEUED
        size = sum(len(arg) for arg in args)
        limit = self.state.db.config.limits.max_batch_bytes
        if len(self.multi) >= MAX_MULTI_COMMANDS or self.multi_bytes + size > limit:
            self.multi_failed = True
            self.multi.clear()
            self.multi_bytes = 0
            return ErrorReply(
                f"ERR MULTI queue is full (at most {MAX_MULTI_COMMANDS} commands and "
                f"{limit} bytes of arguments); the transaction is discarded"
            )
        self.multi.append((command, args))
        self.multi_bytes += size
        return QUEUED

    def execute(self, args: list[bytes]) -> Any:
        """Run one command; see the module doc for what comes back."""
        state = self.state
        command = REGISTRY.get(args[0])
        self.last_active = time.monotonic()
        if command is None:
            if self.multi is not None:
                self.multi_failed = True
            return self._unknown(args)
        if not command.arity_ok(len(args)):
            if self.multi is not None:
                self.multi_failed = True
            return ErrorReply(f"ERR wrong number of arguments for '{command.name.lower()}' command")
        if not self.authenticated and not command.noauth:
            return ErrorReply("NOAUTH Authentication required.")
        view = state.redis_cluster
        if view is not None:
            if command.multi_key and _cross_slot(command, args):
                if self.multi is not None:
                    self.multi_failed = True
                return CROSSSLOT
            moved = _not_served(view, command, args)
            if moved is not None:  # another group owns the slot: redirect, as Redis does
                if self.multi is not None:
                    self.multi_failed = True
                return moved
        if self.multi is not None and not command.nomulti:
            return self._queue(command, args)
        if (
            self.protocol == 2
            and not command.pubsub
            and (self.channels or self.patterns or self.watches)
        ):
            return ErrorReply("ERR " + _PUBSUB_CONTEXT_ERROR.format(command.name.lower()))
        is_write = command.is_write
        if self.pending and (self.pending_solo or not is_write):
            return DRAIN
        self.last_command = command.name
        started = time.perf_counter()
        if not is_write:
            if (
                state.clustered
                and "readonly" in command.flags
                and not self.stale_reads
                and not _eventual_key(state.db, command, args)
            ):
                return asyncio.get_running_loop().create_task(
                    self._read_after_barrier(command, args, started)
                )
            try:
                reply = command.handler(self, state.reads, args)
            except Exception as exc:
                state.stats.record(command.name, time.perf_counter() - started, False)
                return error_reply(exc)
            state.stats.record(command.name, time.perf_counter() - started, True)
            return reply
        if command.blind is not None:
            try:
                pending = self.submit_blind(command, args, started)
            except Exception as exc:
                state.stats.record(command.name, time.perf_counter() - started, False)
                return error_reply(exc)
            if pending is not None:
                return pending
        scope = Scope(state.db, barrier=self.pending > 0)
        try:
            reply = command.handler(self, scope, args)
        except MustDrain:
            return DRAIN
        except Exception as exc:
            state.stats.record(command.name, time.perf_counter() - started, False)
            return error_reply(exc)
        rerun: Callable[[Scope], Any] | None = None
        aborted: Callable[[], bool] | None = None
        if type(reply) is ExecPlan:
            reply, rerun, aborted = reply.reply, reply.rerun, reply.aborted
        if not scope.ops:
            state.stats.record(command.name, time.perf_counter() - started, True)
            return _finished(reply, self.state.db.revision)
        if rerun is None:
            if (
                not scope.reads
                and not scope.conditions
                and coalescible(scope.ops)
                and not _eventual(state.db, scope.ops)
            ):
                return state.coalescer.add(self, command.name, scope.ops, reply, started=started)
            rerun = _rerun(self, command, args)
        if self.pending:
            return DRAIN  # a solo commit goes after this session's writes in flight
        return self._start_commit(command, scope, reply, started, rerun, aborted)

    async def _read_after_barrier(self, command: Command, args: list[bytes], started: float) -> Any:
        """A cluster read: wait for a log barrier (shared by concurrent reads), then read."""
        state = self.state
        try:
            await state.db.abarrier()
            if state.redis_cluster is not None:
                # The slot may have frozen or moved while the barrier waited: a
                # read answered here now could miss a write its new owner took.
                moved = _not_served(state.redis_cluster, command, args)
                if moved is not None:
                    state.stats.record(command.name, time.perf_counter() - started, False)
                    return moved
            reply = command.handler(self, state.reads, args)
            if isinstance(reply, asyncio.Task):
                reply = await reply
            if state.redis_cluster is not None:
                # And after: the read and the check above are not atomic; a slot
                # still served now was served when the read ran.
                moved = _not_served(state.redis_cluster, command, args)
                if moved is not None:
                    state.stats.record(command.name, time.perf_counter() - started, False)
                    return moved
        except Exception as exc:
            state.stats.record(command.name, time.perf_counter() - started, False)
            return error_reply(exc)
        state.stats.record(command.name, time.perf_counter() - started, True)
        return reply

    def fast_reads(self) -> dict[bytes, Command] | None:
        """The read-only commands this session may run without ``execute``, or None.

        While the session is authenticated, outside MULTI, not in RESP2
        subscribed mode and has no write in flight, ``execute`` would only
        call a read-only command's handler with ``state.reads``: a front end
        may do that itself for a run of reads (a pipeline of GETs) and report
        the run with :meth:`ran_reads`. The answer holds until the session
        runs anything else. Keys are exact (upper-case) names; arity is the
        caller's to check (``Command.arity_ok``). If a handler raises, run the
        command with ``execute`` instead: reads have no side effects.
        """
        if (
            self.authenticated
            and (self.stale_reads or not self.state.clustered)
            and self.multi is None
            and not self.pending
            and (self.protocol == 3 or not (self.channels or self.patterns or self.watches))
        ):
            if self.state.redis_cluster is not None:  # multi-key reads check CROSSSLOT
                if self.state.redis_cluster.sharded:
                    return None  # every key is checked for MOVED in ``execute``
                return _SINGLE_KEY_READS or _single_key(_fast_reads(), _SINGLE_KEY_READS)
            return _FAST_READS or _fast_reads()
        return None

    def submit_blind(self, command: Command, args: list[bytes], started: float) -> Pending | None:
        """Queue ``command``'s blind form with the coalescer; None if this call has none.

        The form's errors (a bad key, a bad value) propagate: the caller answers them.
        """
        assert command.blind is not None
        form = command.blind(self, args)
        if form is None:
            return None
        ops, reply = form
        if _eventual(self.state.db, ops):
            return None  # not coalesced: ``execute`` commits it alone, in this session's order
        return self.state.coalescer.add(self, command.name, ops, reply, started=started)

    def fast_blind_writes(self) -> dict[bytes, Command] | None:
        """The commands with a blind form this session may submit without ``execute``.

        The same conditions as :meth:`fast_reads`, except that writes in
        flight are fine as long as all of them are coalesced (``execute``
        would not drain either; see "Order" in the module doc): a pipeline of
        SETs goes to the coalescer straight from the front end. The caller
        checks arity, calls :meth:`submit_blind`, and on ``None`` or an
        exception runs the command with ``execute``,
        which answers (and counts) it properly; it also keeps
        ``last_command`` and ``last_active`` current.
        """
        if (
            self.authenticated
            and self.multi is None
            and not self.pending_solo
            and (self.protocol == 3 or not (self.channels or self.patterns or self.watches))
        ):
            if self.state.redis_cluster is not None:  # multi-key writes check CROSSSLOT
                if self.state.redis_cluster.sharded:
                    return None  # every key is checked for MOVED in ``execute``
                return _SINGLE_KEY_BLIND or _single_key(_fast_blind(), _SINGLE_KEY_BLIND)
            return _FAST_BLIND or _fast_blind()
        return None

    def ran_reads(self, commands: list[Command], seconds: float) -> None:
        """Account for reads run through :meth:`fast_reads` (stats, CLIENT LIST)."""
        self.last_active = time.monotonic()
        self.last_command = commands[-1].name
        if len(commands) == 1:
            self.state.stats.record(self.last_command, seconds, True)
            return
        first = commands[0]
        if commands.count(first) == len(commands):  # a run of one command (C speed)
            self.state.stats.record_many(first.name, len(commands), seconds / len(commands))
            return
        counts: dict[str, int] = {}
        for command in commands:
            counts[command.name] = counts.get(command.name, 0) + 1
        each = seconds / len(commands)
        record = self.state.stats.record_many
        for name, count in counts.items():
            record(name, count, each)

    def _unknown(self, args: list[bytes]) -> ErrorReply:
        name = args[0].decode("utf-8", "replace")[:128]
        rest = " ".join(f"'{a.decode('utf-8', 'replace')[:128]}'" for a in args[1:8])
        return ErrorReply(f"ERR unknown command '{name}', with args beginning with: {rest}")

    def _start_commit(  # noqa: PLR0917
        self,
        command: Command,
        scope: Scope,
        reply: Any,
        started: float,
        rerun: Callable[[Scope], Any],
        aborted: Callable[[], bool] | None,
    ) -> asyncio.Task[Any]:
        assert not self.pending, "a solo commit starts with nothing of the session in flight"
        self.pending += 1
        self.pending_solo += 1
        return asyncio.get_running_loop().create_task(
            self._commit(command, scope, reply, started, rerun, aborted)
        )

    async def _commit(  # noqa: PLR0917
        self,
        command: Command,
        scope: Scope,
        reply: Any,
        started: float,
        rerun: Callable[[Scope], Any],
        aborted: Callable[[], bool] | None,
    ) -> Any:
        ok = False
        try:
            result = await self.commit_scope(scope, reply, rerun, aborted=aborted)
            ok = type(result) is not ErrorReply
            return result
        except Exception as exc:
            return error_reply(exc)
        finally:
            self.pending -= 1
            self.pending_solo -= 1
            self.state.stats.record(command.name, time.perf_counter() - started, ok)

    async def commit_scope(
        self,
        scope: Scope,
        reply: Any,
        rerun: Callable[[Scope], Any],
        *,
        aborted: Callable[[], bool] | None = None,
    ) -> Any:
        """Commit ``scope``; if something it read changed meanwhile, run again.

        ``rerun(scope)`` runs the command(s) again on a fresh scope and returns
        the new reply. ``aborted()`` (EXEC's WATCH check) says when a failed
        commit must not be retried: then the reply is ``NULL_ARRAY``.
        """
        state = self.state
        inflight = state.inflight
        loop = asyncio.get_running_loop()
        # Local read-modify-writes of a key queue up behind each other (FIFO):
        # each claims its keys at once, then waits for the claims before it,
        # so they do not all read the same revision and lose the compare.
        done: asyncio.Future[None] = loop.create_future()
        claimed: list[tuple[str, str]] = []
        try:
            for attempt in range(MAX_ATTEMPTS):
                keys = {*scope.reads, *scope.written_keys()}
                waits = {inflight[k] for k in keys if k in inflight and inflight[k] is not done}
                for key in keys:
                    if inflight.get(key) is not done:
                        inflight[key] = done
                        claimed.append(key)
                if waits and scope.reads:
                    await asyncio.wait(waits)
                    scope = Scope(state.db)
                    reply = rerun(scope)
                    if not scope.ops:
                        return _finished(reply, state.db.revision)
                try:
                    result = await state.db.atxn(scope.compares(), scope.ops)
                except ConditionFailed:
                    if not scope.reads:
                        raise
                    if aborted is not None and aborted():
                        return NULL_ARRAY
                    if attempt > 4:
                        await asyncio.sleep(min(0.05, 0.001 * attempt))
                    scope = Scope(state.db)
                    reply = rerun(scope)
                    if not scope.ops:
                        return _finished(reply, state.db.revision)
                    continue
                if type(reply) is Later:
                    return reply.finish(Entries(result.entries, result.revision, result.stamps))
                return reply
        finally:
            done.set_result(None)
            for key in claimed:
                if inflight.get(key) is done:
                    del inflight[key]
        raise CommandError("the keys this command reads kept changing under it; try again", "BUSY")

    # -- pushes --------------------------------------------------------------------

    def push_message(self, *parts: Any) -> None:
        self.push(Push(list(parts)))


CROSSSLOT = ErrorReply("CROSSSLOT Keys in request don't hash to the same slot")


def _eventual(db: Any, ops: list[Any]) -> bool:
    """Whether ``ops`` write an eventual table.

    Such writes go to the node's own log, not the replicator's: coalesced
    with other connections' writes they would make a batch that spans two
    logs, and committed beside this session's writes in flight they could
    take effect before them. Alone (``execute`` drains first), neither.
    """
    eventual = db.eventual_tables()
    return bool(eventual) and any(getattr(op, "table", None) in eventual for op in ops)


def _eventual_key(db: Any, command: Command, args: list[bytes]) -> bool:
    """Whether the command's (first) key is in an eventual table: read without a barrier,
    which would wait for a Raft quorum that an eventual table does not need."""
    eventual = db.eventual_tables()
    if not eventual:
        return False
    keys = command.key_args(args)
    if not keys:
        return False
    try:
        return split_key(keys[0])[0] in eventual
    except CommandError:
        return False  # not UTF-8: the command answers that itself


def _not_served(view: Any, command: Command, args: list[bytes]) -> ErrorReply | None:
    """``MOVED``/``TRYAGAIN`` when this group does not serve the command's (first) key now."""
    moved = view.not_served(command, args)
    return None if moved is None else ErrorReply(moved)


def _cross_slot(command: Command, args: list[bytes]) -> bool:
    """Whether the keys of this call hash to more than one slot (Redis Cluster refuses it)."""
    keys = command.key_args(args)
    if len(keys) < 2:
        return False
    slot = key_slot(keys[0])
    return any(key_slot(key) != slot for key in keys[1:])


_FAST_READS: dict[bytes, Command] = {}


def _fast_reads() -> dict[bytes, Command]:
    """Read-only commands by exact name (filled once the table is complete)."""
    if not _FAST_READS:
        _FAST_READS.update(
            (command.name.encode(), command)
            for command in REGISTRY
            if "readonly" in command.flags and not command.is_write
        )
    return _FAST_READS


_FAST_BLIND: dict[bytes, Command] = {}


def _fast_blind() -> dict[bytes, Command]:
    """Write commands with a blind form, by exact name (filled once the table is complete)."""
    if not _FAST_BLIND:
        _FAST_BLIND.update(
            (command.name.encode(), command) for command in REGISTRY if command.blind is not None
        )
    return _FAST_BLIND


_SINGLE_KEY_READS: dict[bytes, Command] = {}
_SINGLE_KEY_BLIND: dict[bytes, Command] = {}


def _single_key(
    commands: dict[bytes, Command], cache: dict[bytes, Command]
) -> dict[bytes, Command]:
    """``commands`` without the multi-key ones (filled once into ``cache``)."""
    cache.update((name, c) for name, c in commands.items() if not c.multi_key)
    return cache


def _finished(reply: Any, revision: int) -> Any:
    return reply.finish(Entries([], revision)) if type(reply) is Later else reply


def _rerun(session: Session, command: Command, args: list[bytes]) -> Callable[[Scope], Any]:
    return lambda scope: command.handler(session, scope, args)
