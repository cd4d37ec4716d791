"""The commit pipeline: sequence batches, make them durable in groups, apply.

It is the heart of :class:`~amber.node.local_log.LocalLog`, the
single-process :class:`~amber.node.replicator.Replicator`; each submitted
batch is a :class:`~amber.node.replicator.Completion` until its writer is
woken.

A write goes through three steps:

1. ``submit`` stamps the batch with the next log sequence number and a
   monotonic time, and appends it to the backend's buffer (no I/O, a few µs
   under a lock).
2. A **leader** — the first waiting writer, or for asyncio writers the event
   loop itself or the background flusher (see below) — flushes everything
   appended so far with one write (and one fsync in ``always`` mode) while
   later writers keep appending: one fsync serves every write of the group
   (group commit).
3. The leader applies the flushed batches to the store in sequence order,
   publishes their changes, and wakes their writers.

Asyncio writers are flushed once per turn of their event loop, by the loop
itself, while the log's flushes are quick (an fsync on an SSD takes well under
a millisecond): that is Redis' model (``appendfsync always`` fsyncs in its
event loop) and it avoids handing every group to another thread and back —
two threads share the GIL, and after its fsync a flusher thread waits for
the busy loop to let go of it. When flushes turn slow (a moving disk, a
loaded host: :data:`INLINE_FLUSH_MAX` on average) the loop stops waiting on
them and the background flusher thread leads instead, so reads keep flowing.
Either way a writer is woken only after its batch is durable and applied.

So a write becomes visible only after it is as durable as the mode promises:
no reader ever sees a write that a crash could take back. Compares are judged
at apply time, in log order, exactly as a replica replaying the log would.

If the backend fails (``StorageFailed``), every waiting write fails with it
and the pipeline refuses new ones: after a failed fsync the OS may have
dropped the dirty pages, so only a reopen can say what is durable.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..errors import AmberError, Closed, StorageFailed
from ..persistence import Backend
from ..store.batch import Batch, stamp
from ..store.state import ApplyResult, Store
from .replicator import Completion, complete

log = logging.getLogger(__name__)

#: Average flush time (seconds) up to which an event loop flushes its own writers.
INLINE_FLUSH_MAX = 0.005
#: Weight of the newest flush in that average.
_FLUSH_EWMA = 0.2


#: The pipeline's former name for a submitted batch (now the shared completion type).
Ticket = Completion


class CommitPipeline:
    """Group commit over one backend; see the module doc."""

    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: Config,
        *,
        next_seq: int,
        on_applied: Callable[[ApplyResult], None] | None = None,
    ) -> None:
        self._store = store
        self._backend = backend
        self._sync_on_ack = config.durability == "always"
        self._on_applied = on_applied
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: deque[Completion] = deque()
        self._next_seq = next_seq
        self._last_time = 0
        self._leading = False
        self._cond_waiters = 0
        #: Highest seq someone asked to have fsynced, and highest seq fsynced and applied.
        self._sync_wanted = 0
        self._synced_seq = next_seq - 1
        self._failed: StorageFailed | None = None
        self._closed = False
        self._background = threading.Event()
        self._flusher: threading.Thread | None = None
        #: Event loops with an inline flush scheduled for the end of their turn.
        self._inline_loops: set[asyncio.AbstractEventLoop] = set()
        #: Recent flush time in seconds (moving average): decides who leads asyncio writers.
        self.flush_seconds = 0.0
        #: Counters for stats and metrics.
        self.batches = 0
        self.flushes = 0
        self.fsyncs = 0
        self.bytes = 0

    # -- submitting ---------------------------------------------------------

    def submit(self, batch: Batch, body: bytes) -> Completion:
        """Sequence an encoded batch and queue it for the next flush."""
        with self._lock:
            if self._failed is not None:
                raise StorageFailed(f"writes are stopped: {self._failed}") from self._failed
            if self._closed:
                raise Closed("the database is closed")
            now = time.time_ns() // 1_000_000
            now = max(now, self._last_time)
            self._last_time = now
            seq = self._next_seq
            record = stamp(now, body)
            try:
                self._backend.append(seq, record)
            except AmberError as exc:
                self._fail(exc)
                raise
            self._next_seq = seq + 1
            ticket = Completion(seq, Batch(batch.ops, batch.compares, now))
            self._pending.append(ticket)
            self.bytes += len(record)
        return ticket

    @property
    def last_seq(self) -> int:
        """The last sequence number handed out."""
        return self._next_seq - 1

    # -- waiting ------------------------------------------------------------

    def wait(self, ticket: Completion) -> ApplyResult:
        """Block until the ticket's batch is durable and applied."""
        if not ticket.done:
            self._lead_until(lambda: ticket.done, self._sync_on_ack, ticket)
        return self._outcome(ticket)

    async def wait_async(self, ticket: Completion) -> ApplyResult:
        """Like ``wait``, for asyncio; see the module doc for who flushes.

        The writers of one loop turn share one flush: the loop leads it once
        the turn's callbacks have run (or, while flushes are slow, the
        background flusher does and the loop goes on).
        """
        if not ticket.done:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()
            inline = self.flush_seconds <= INLINE_FLUSH_MAX
            with self._lock:
                armed = not ticket.done and self._failed is None
                if armed:
                    ticket.future, ticket.loop = future, loop
                    if not inline:
                        self._start_flusher()
                        self._background.set()
                    elif loop not in self._inline_loops:
                        self._inline_loops.add(loop)
                        loop.call_soon(self._lead_inline, loop)
            if armed:
                await future
        return self._outcome(ticket)

    def _lead_inline(self, loop: asyncio.AbstractEventLoop) -> None:
        """Flush for the writers of ``loop``'s turn, in the loop (see the module doc).

        Never sleeps on another leader: if one is at work, the background
        flusher takes over (it leads as soon as that leader is done).
        """
        with self._lock:
            self._inline_loops.discard(loop)
            if not self._pending or self._failed is not None:
                return
            if self._leading or self._closed:
                self._start_flusher()
                self._background.set()
                return
            self._leading = True
        try:
            self._lead(self._sync_on_ack)
        finally:
            with self._lock:
                self._leading = False
                self._hand_over()
                if self._pending and any(t.future is not None for t in self._pending):
                    # Submitted by another thread meanwhile, or past the flushed mark.
                    self._start_flusher()
                    self._background.set()

    def sync(self) -> int:
        """Fsync everything submitted so far and apply it; returns its last seq.

        Any leader honours a wanted sync point, so a caller here waits for
        the durable mark, never for a turn to lead: busy writers cannot
        starve it.
        """
        with self._lock:
            target = self._next_seq - 1
            self._sync_wanted = max(self._sync_wanted, target)
        self._lead_until(lambda: self._synced_seq >= target, sync=True)
        if self._failed is not None:
            raise StorageFailed(f"writes are stopped: {self._failed}") from self._failed
        return target

    def close(self) -> None:
        """Refuse new writes, make the queued ones durable, stop the flusher."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._failed is None:
            try:
                self.sync()
            except StorageFailed:
                log.exception("final sync on close failed")
        self._background.set()
        if self._flusher is not None:
            self._flusher.join(timeout=10)

    def detach(self) -> None:
        """Drop the publish callback (after close), so nothing keeps its owner alive."""
        self._on_applied = None

    # -- leading ------------------------------------------------------------

    def _outcome(self, ticket: Completion) -> ApplyResult:
        return ticket.outcome()

    def _lead_until(
        self, finished: Callable[[], bool], sync: bool, ticket: Completion | None = None
    ) -> None:
        """Lead flushes until ``finished()``, or sleep while someone else leads.

        A writer (``ticket`` given) sleeps on its own event: a leader wakes
        only the writers it finished plus the oldest still waiting (to lead
        next), not every writer after every flush. Other callers (sync, the
        background flusher) wait on the condition.
        """
        with self._cond:
            while not finished() and self._failed is None:
                if self._leading:
                    if ticket is None:
                        self._cond_waiters += 1
                        self._cond.wait()
                        self._cond_waiters -= 1
                        continue
                    wake = ticket.wake = threading.Event()
                    self._lock.release()
                    try:
                        wake.wait()
                    finally:
                        self._lock.acquire()
                        ticket.wake = None
                    continue
                self._leading = True
                self._lock.release()
                try:
                    self._lead(sync)
                finally:
                    self._lock.acquire()
                    self._leading = False
                    self._hand_over()

    def _hand_over(self) -> None:
        """Wake the next leader (lock held): the oldest sleeping writer, and condition waiters."""
        for pending in self._pending:
            if pending.wake is not None:
                pending.wake.set()
                break
        if self._cond_waiters:
            self._cond.notify_all()

    def _lead(self, sync: bool) -> None:
        """Flush what is appended, apply it in order, wake its writers.

        Runs outside ``self._lock`` with ``self._leading`` set, so exactly one
        thread flushes and applies at a time, in sequence order.
        """
        sync = sync or self._sync_wanted > self._synced_seq
        started = time.perf_counter()
        try:
            upto = self._backend.flush(sync)
        except AmberError as exc:
            with self._lock:
                self._fail(exc)
            return
        except OSError as exc:  # a backend that forgot to translate
            with self._lock:
                self._fail(StorageFailed(f"flush failed: {exc}"))
            return
        self.flush_seconds += _FLUSH_EWMA * (time.perf_counter() - started - self.flush_seconds)
        self.flushes += 1
        if sync:
            self.fsyncs += 1
        with self._lock:
            group: list[Completion] = []
            pending = self._pending
            while pending and pending[0].seq <= upto:
                group.append(pending.popleft())
        if not group:
            if sync:
                self._synced_seq = max(self._synced_seq, upto)
            return
        store = self._store
        try:
            with store.lock:
                for ticket in group:
                    batch = ticket.batch
                    assert batch is not None  # made by ``submit``, with its stamped batch
                    ticket.result = store.apply(ticket.seq, batch)
        except Exception as exc:  # a bug in apply: the state is unknown, stop writing
            log.exception("applying a batch failed; refusing further writes")
            with self._lock:
                for ticket in group:
                    if ticket.result is None:
                        ticket.error = StorageFailed(f"applying the batch failed: {exc!r}")
                self._fail(StorageFailed(f"applying a batch failed: {exc!r}"))
                self._finish(group)
            return
        self.batches += len(group)
        if sync:
            self._synced_seq = max(self._synced_seq, upto)
        if self._on_applied is not None:
            for ticket in group:
                assert ticket.result is not None
                try:
                    self._on_applied(ticket.result)
                except Exception:
                    log.exception("publishing applied changes failed")
        with self._lock:
            self._finish(group)

    def _finish(self, group: list[Completion]) -> None:
        """Mark tickets done and wake their writers (lock held, so no wake-up is lost)."""
        complete(group)

    def _fail(self, exc: AmberError) -> None:
        """Stop writes and fail every queued ticket (lock held)."""
        failure = exc if isinstance(exc, StorageFailed) else StorageFailed(str(exc))
        if self._failed is None:
            self._failed = failure
            log.error("storage failed, writes are stopped: %s", failure)
        failed = list(self._pending)
        self._pending.clear()
        for ticket in failed:
            ticket.error = failure
        self._finish(failed)
        self._cond.notify_all()

    # -- the background flusher (serves asyncio writers) ---------------------

    def _start_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(
                target=self._flush_loop, name="amber-flusher", daemon=True
            )
            self._flusher.start()

    def _flush_loop(self) -> None:
        while True:
            self._background.wait()
            self._background.clear()
            self._lead_until(lambda: not self._pending, self._sync_on_ack)
            if self._closed and not self._pending:
                return

    def stats(self) -> dict[str, Any]:
        """Counters: batches applied, flushes, fsyncs, log bytes."""
        return {
            "batches": self.batches,
            "flushes": self.flushes,
            "fsyncs": self.fsyncs,
            "log_bytes": self.bytes,
            "last_seq": self.last_seq,
            "failed": str(self._failed) if self._failed else None,
        }
