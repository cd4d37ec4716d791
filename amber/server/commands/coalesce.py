"""Blind writes of one event-loop turn, committed as one batch.

A blind write (SET, MSET, DEL … with nothing read first) cannot fail a
compare, so the writes that all connections send in the same turn of the
event loop are submitted to the database as **one** batch: one encode, one
log record, one apply, one wake-up — instead of one per command. This is
group commit one level up: fsyncs were already shared; now the per-write
bookkeeping is too. Each command still gets its reply only after the batch
is durable, in its connection's order.

What changes for an observer: independent writes that arrived together
share a revision (a watcher sees one revision with several keys). Writes of
one connection keep their order: the ops of a batch apply in the order they
were added, and batches reach the log in the order they were flushed (see
``Coalescer._flush``; in a cluster, the node applies them in the order
submitted even when a Raft entry must be retried: "Order" in
:mod:`amber.replication.cluster`; how a session orders these against its
other writes is in :mod:`.session`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ...database import Delete, Put, Update
from ...node.pipeline import INLINE_FLUSH_MAX
from .registry import Entries, Later
from .replies import ErrorReply

if TYPE_CHECKING:
    from .session import Session
    from .state import ServerState

__all__ = ["Coalescer", "Pending", "coalescible"]

#: Ops per batch, and a value size above which a write goes alone.
MAX_OPS = 512
MAX_VALUE_CHARS = 16 * 1024
#: Weight of the newest commit in the moving average of commit times.
_EWMA = 0.2


def coalescible(ops: list[Any]) -> bool:
    """Plain puts of short strings, updates and deletes: nothing that can fail a batch.

    The ops must also be checked already (names, frozen values), as a
    ``Scope`` or a blind handler builds them: the batch commits through
    ``Database.commit_checked``, which does not check again.
    """
    for op in ops:
        kind = type(op)
        if kind is Put:
            value = op.value
            if type(value) is not str or len(value) > MAX_VALUE_CHARS:
                return False
            ttl_ms = op.ttl_ms
            if ttl_ms is not None and (type(ttl_ms) is not int or ttl_ms <= 0):
                return False
        elif kind is Update:
            # Cannot fail the batch: a refused update is a no-op with its own answer.
            if any(type(arg) is str and len(arg) > MAX_VALUE_CHARS for arg in op.args):
                return False
        elif kind is not Delete:
            return False
    return len(ops) <= MAX_OPS


class Pending:
    """A reply that exists once its batch is durable; a lighter ``asyncio.Future``.

    Not the node's :class:`~amber.node.replicator.Completion` (which this
    coalescer's batch waits on, one for many commands): a command's place in
    its connection's reply order.

    It is also the batch's record of the command (who asked, what to answer,
    which ops are its own): one object per write, not two. The front end sets
    ``notify``; it is called once per batch for all of its connection's
    replies that the batch completed (not once per reply).
    """

    __slots__ = ("_done", "_reply", "command", "first", "last", "notify", "session", "started")

    def __init__(  # noqa: PLR0917  (a record)
        self, session: Session, command: str, reply: Any, started: float, first: int, last: int
    ) -> None:
        self._done = False
        #: The reply to give once durable (a ``Later`` is finished with the batch's entries).
        self._reply = reply
        self.notify: Callable[[Any], None] | None = None
        self.session = session
        self.command = command
        self.started = started
        self.first = first
        self.last = last

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        return self._reply


class Coalescer:
    """Collects blind writes during a loop turn; commits them together.

    Who waits for the commit depends on how long the log takes to flush
    (a moving average of what the commits took, :data:`INLINE_FLUSH_MAX`):

    - quick (an SSD): the loop commits the batch itself, at the end of the
      turn, and answers at once — Redis' model, one fsync per turn in the
      loop. No thread hand-off; requests that arrive meanwhile wait in the
      socket buffers and make the next turn's batch;
    - slow: the batch is handed to the database's flusher thread and the loop
      goes on serving other clients; its keys are marked in flight so a
      read-modify-write of them waits for it. Always so in a cluster, where
      a commit waits on the network.
    """

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._ops: list[Any] = []
        self._waiters: list[Pending] = []
        #: Some reply of the batch needs the entries its ops wrote (``Later``).
        self._entries = False
        self._scheduled = False
        #: Moving average of the seconds a commit took (decides inline or not).
        self.commit_seconds = 0.0
        #: Batches handed to a task and not finished: until they are, flushes
        #: go the same way (a task submits on its first step, tasks step in order).
        self.handed_off = 0
        #: Batches committed and commands they carried (INFO).
        self.batches = 0
        self.commands = 0

    def add(
        self, session: Session, command: str, ops: list[Any], reply: Any, *, started: float
    ) -> Pending:
        """Queue ``ops``; the reply is ready once the batch is durable."""
        if len(self._ops) + len(ops) > MAX_OPS:
            # Called from inside a front end's command loop: answer later.
            self._flush(notify_now=False)
        first = len(self._ops)
        self._ops.extend(ops)
        future = Pending(session, command, reply, started, first, len(self._ops))
        self._waiters.append(future)
        session.pending += 1
        if type(reply) is Later:
            self._entries = True
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return future

    def _flush(self, notify_now: bool = True) -> None:
        self._scheduled = False
        if not self._ops:
            return
        ops, waiters, entries = self._ops, self._waiters, self._entries
        self._ops, self._waiters, self._entries = [], [], False
        state = self.state
        started = time.perf_counter()
        # A cluster commit waits on the network: never in the loop. And never
        # inline while a batch handed off earlier may not have been submitted
        # yet: batches reach the log in the order they were flushed.
        if self.commit_seconds <= INLINE_FLUSH_MAX and not state.clustered and not self.handed_off:
            result: Any = None
            error: BaseException | None = None
            try:
                result = state.db.commit_checked(ops, entries=entries)
            except Exception as exc:
                error = exc
            self._took(time.perf_counter() - started)
            callbacks = self._answer(waiters, result, error)
            if notify_now:
                for callback in callbacks:
                    callback(None)
            else:
                loop = asyncio.get_running_loop()
                for callback in callbacks:
                    loop.call_soon(callback, None)
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        inflight = state.inflight
        keys = [(op.table, op.key) for op in ops]
        for key in keys:
            inflight[key] = done
        task = loop.create_task(state.db.acommit_checked(ops, entries=entries))
        self.handed_off += 1

        def finished(task: asyncio.Task[Any]) -> None:
            self.handed_off -= 1
            done.set_result(None)
            for key in keys:
                if inflight.get(key) is done:
                    del inflight[key]
            self._took(time.perf_counter() - started)
            result: Any = None
            error: BaseException | None = None
            try:
                result = task.result()
            except BaseException as exc:
                error = exc
            for callback in self._answer(waiters, result, error):
                callback(None)

        task.add_done_callback(finished)

    def _took(self, seconds: float) -> None:
        self.commit_seconds += _EWMA * (seconds - self.commit_seconds)

    def _answer(
        self, waiters: list[Pending], result: Any, error: BaseException | None
    ) -> list[Callable[[Any], None]]:
        """Set every waiter's reply; returns the front ends' callbacks, one each."""
        from .session import error_reply  # noqa: PLC0415  (session imports this module)

        self.batches += 1
        self.commands += len(waiters)
        now = time.perf_counter()
        record = self.state.stats.record
        notify: dict[Callable[[Any], None], None] = {}
        for waiter in waiters:
            waiter.session.pending -= 1
            if error is not None:
                reply: Any = error_reply(error)
                ok = False
            else:
                reply = waiter._reply
                if type(reply) is Later:
                    reply = reply.finish(
                        Entries(result.entries[waiter.first : waiter.last], result.revision)
                    )
                ok = type(reply) is not ErrorReply  # a refused update answers an error
            record(waiter.command, now - waiter.started, ok)
            waiter._reply = reply
            waiter._done = True
            if waiter.notify is not None:
                notify[waiter.notify] = None
        return list(notify)
