"""The consumer side of a watch: sync iterator, async iterator, callbacks.

A :class:`Watch` wraps one :class:`~amber.watch.watcher.Watcher` and decides
how its consumer waits: a blocking ``next()`` waits on a thread event; an
``async for`` awaits a future that the publisher resolves with one
``loop.call_soon_threadsafe`` per burst of publishes (never one per event);
the callback form is pumped by the database's dispatcher thread
(:mod:`.dispatch`), never by the publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, Generic, TypeVar, cast

from ..errors import AmberError, Closed, InvalidArgument
from .dispatch import LINGER
from .event import Event, EventBatch, Progress
from .hub import WatchHub
from .watcher import Watcher, WatchFilter

__all__ = ["Watch", "open_watch"]

log = logging.getLogger(__name__)

T = TypeVar("T", Event, Event | Progress)

#: ``poll`` found the watch closed by its own consumer: stop iterating.
_STOP: Any = object()
#: Revisions one pump delivers before letting the dispatcher serve other watches.
_PUMP_BATCHES = 64


class _LoopWaker:
    """Wakes futures on one event loop from other threads, many per wake-up.

    The first wake-up schedules one ``call_soon_threadsafe``, which waits
    ``LINGER`` on the loop before resolving; those that arrive meanwhile join
    it. Under load the publisher then pays a list append, not a syscall, per
    event, and the loop thread takes the GIL once for many events.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._lock = threading.Lock()
        self._pending: list[asyncio.Future[None]] = []

    def wake(self, future: asyncio.Future[None]) -> None:
        with self._lock:
            self._pending.append(future)
            if len(self._pending) > 1:
                return
        # A closed loop raises RuntimeError: nobody is left to wake.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._linger)

    def _linger(self) -> None:
        self.loop.call_later(LINGER, self._run)

    def _run(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            if not future.done():
                future.set_result(None)


_wakers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWaker] = (
    weakref.WeakKeyDictionary()
)
_wakers_lock = threading.Lock()


def _waker_for(loop: asyncio.AbstractEventLoop) -> _LoopWaker:
    waker = _wakers.get(loop)
    if waker is None:
        with _wakers_lock:
            waker = _wakers.get(loop)
            if waker is None:
                waker = _wakers[loop] = _LoopWaker(loop)
    return waker


class Watch(Generic[T]):
    """A live, ordered stream of the events a watch matches.

    Guarantees, per watch:

    - revisions strictly increase; the events of one transaction share its
      revision and are delivered together, in commit order (the event
      iterator yields them one by one but never interleaves revisions);
    - no matching event is skipped or repeated: history from
      ``start_revision`` comes first, then live events, with no gap between;
    - the watch never slows writers: if its queue (``Config.watch_queue``
      events or ``Config.watch_queue_bytes``) overflows, it delivers what was queued and then raises
      ``Lagged(last_revision)``; watch again from ``last_revision + 1``;
    - closing the database ends it with ``Closed`` after what was queued;
      ``close()`` ends it quietly (iteration stops).

    Consume it one way only: iterate (``for`` / ``async for``), iterate
    :meth:`batches`, or give a callback. A context manager (sync and async).
    """

    def __init__(
        self,
        hub: WatchHub,
        watcher: Watcher,
        *,
        progress_interval: float | None = None,
        callback: Callable[[T], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> None:
        self._hub = hub
        self._watcher = watcher
        self._interval = progress_interval
        self._buffer: deque[Event] = deque()
        self._buffer_revision = 0
        self._closed = False
        self._revision = watcher.min_revision - 1
        self._signal = threading.Event()
        self._waker: _LoopWaker | None = None
        self._callback: Callable[[T], object] | None = callback
        self._on_error = on_error
        self._dispatcher = hub.dispatcher
        #: Callback form: held while delivering, so close() can wait for it.
        self._pump_lock = threading.Lock()
        self._finished = False
        self._deadline = math.inf
        if callback is not None:
            if progress_interval is not None:
                self._deadline = time.monotonic() + progress_interval
                self._dispatcher.add_timed(self, self._deadline)
            self._dispatcher.schedule(self)

    def __repr__(self) -> str:
        f = self._watcher.filter
        what = f"key={f.key!r}" if f.key is not None else f"prefix={f.prefix or ''!r}"
        state = "closed" if self._closed else f"at revision {self._revision}"
        return f"<amber.Watch table={f.table!r} {what} {state}>"

    @property
    def revision(self) -> int:
        """The last revision fully delivered (resume with ``start_revision=revision + 1``)."""
        return self._revision

    def progress(self) -> int:
        """The database's current revision, as the watch sees it.

        Every matching event up to it has been delivered or is queued ahead
        of anything later: once the watch is drained, the consumer has seen
        everything up to this revision.
        """
        return self._hub.progress()

    def close(self) -> None:
        """Stop the watch; iteration ends quietly. Idempotent, any thread.

        With a callback: once ``close`` returns, the callback is not called
        again (a call in flight on the dispatcher is waited for).
        """
        if self._closed:
            return
        self._closed = True
        self._hub.unsubscribe(self._watcher)
        if self._callback is not None:
            self._dispatcher.remove_timed(self)
            if self._dispatcher.on_thread():
                self._finished = True
            else:
                with self._pump_lock:
                    self._finished = True

    def __enter__(self) -> Watch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Watch[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- taking batches -----------------------------------------------------------------

    def _poll(self) -> EventBatch | None:
        try:
            return self._watcher.poll()
        except Closed:
            if self._closed:
                return cast(EventBatch, _STOP)
            raise

    def _idle(self) -> Progress | None:
        revision = self._hub.idle_revision(self._watcher)
        if revision is None:
            return None
        self._revision = max(self._revision, revision)
        return Progress(revision)

    def _next_batch(self) -> EventBatch | Progress:
        watcher, signal = self._watcher, self._signal
        while True:
            batch = self._poll()
            if batch is not None:
                return batch
            signal.clear()
            if not watcher.arm(signal.set):
                continue
            if not signal.wait(self._interval):
                watcher.disarm()
                progress = self._idle()
                if progress is not None:
                    return progress

    async def _anext_batch(self) -> EventBatch | Progress:
        watcher = self._watcher
        loop = asyncio.get_running_loop()
        waker = self._waker
        if waker is None or waker.loop is not loop:
            waker = self._waker = _waker_for(loop)
        while True:
            batch = self._poll()
            if batch is not None:
                return batch
            future: asyncio.Future[None] = loop.create_future()
            if not watcher.arm(partial(waker.wake, future)):
                continue
            try:
                if self._interval is None:
                    await future
                else:
                    await asyncio.wait_for(future, self._interval)
            except TimeoutError:
                watcher.disarm()
                progress = self._idle()
                if progress is not None:
                    return progress
            except BaseException:
                watcher.disarm()
                raise

    # -- the event iterators ---------------------------------------------------------------

    def _take(self, item: EventBatch | Progress) -> T | None:
        """Turn a batch or progress mark into the next item (None: iteration ends)."""
        if item is _STOP:
            return None
        if isinstance(item, Progress):
            return cast(T, item)
        self._buffer.extend(item.events)
        self._buffer_revision = item.revision
        return self._pop()

    def _pop(self) -> T:
        event = self._buffer.popleft()
        if not self._buffer:
            self._revision = self._buffer_revision
        return event

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._buffer:
            return self._pop()
        item = self._take(self._next_batch())
        if item is None:
            raise StopIteration
        return item

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        if self._buffer:
            return self._pop()
        item = self._take(await self._anext_batch())
        if item is None:
            raise StopAsyncIteration
        return item

    def batches(self) -> Batches:
        """Iterate whole revisions (``EventBatch``), sync or async.

        With ``progress_interval``, an idle watch yields ``EventBatch(r, ())``:
        no more matching events up to revision ``r``.
        """
        return Batches(self)

    # -- the callback form (run by the dispatcher) ----------------------------------------------

    def _schedule(self) -> None:
        self._dispatcher.schedule(self)

    def pump(self) -> None:
        """Deliver up to a few revisions to the callback, then re-arm or reschedule."""
        callback = self._callback
        assert callback is not None
        with self._pump_lock:
            if self._finished:
                return
            watcher = self._watcher
            for _ in range(_PUMP_BATCHES):
                try:
                    batch = watcher.poll()
                except AmberError as exc:
                    self._finish(None if self._closed and isinstance(exc, Closed) else exc)
                    return
                if batch is None:
                    if watcher.arm(self._schedule):
                        return
                    continue
                if self._interval is not None:
                    self._deadline = time.monotonic() + self._interval
                try:
                    for event in batch.events:
                        if self._finished:
                            return
                        callback(event)
                except Exception as exc:
                    log.exception("a watch callback raised; the watch is closed")
                    self._finish(exc)
                    return
                self._revision = batch.revision
        self._schedule()  # more may be ready: let the other watches go first

    def idle_check(self, now: float) -> float:
        """Send ``Progress`` to an idle callback watch when its interval is up."""
        if self._finished or self._interval is None:
            return math.inf
        if now < self._deadline:
            return self._deadline
        callback = self._callback
        assert callback is not None
        with self._pump_lock:
            if self._finished:
                return math.inf
            progress = self._idle()
            if progress is not None:
                try:
                    callback(cast(T, progress))
                except Exception as exc:
                    log.exception("a watch callback raised; the watch is closed")
                    self._finish(exc)
                    return math.inf
            self._deadline = now + self._interval
            return self._deadline

    def _finish(self, error: BaseException | None) -> None:
        """End a callback watch (pump lock held); report ``error`` unless closed quietly."""
        self._finished = True
        self._dispatcher.remove_timed(self)
        if not self._closed:
            self._closed = True
            self._hub.unsubscribe(self._watcher)
        if error is None:
            return
        if self._on_error is not None:
            try:
                self._on_error(error)
            except Exception:
                log.exception("a watch on_error handler raised")
        elif isinstance(error, AmberError):
            log.warning("watch ended: %s", error)


class Batches:
    """A watch's revisions as ``EventBatch`` items; see :meth:`Watch.batches`."""

    def __init__(self, watch: Watch[Any]) -> None:
        self._watch = watch

    def _shape(self, item: EventBatch | Progress) -> EventBatch | None:
        if item is _STOP:
            return None
        if isinstance(item, Progress):
            return EventBatch(item.revision, ())
        self._watch._revision = item.revision
        return item

    def __iter__(self) -> Iterator[EventBatch]:
        return self

    def __next__(self) -> EventBatch:
        batch = self._shape(self._watch._next_batch())
        if batch is None:
            raise StopIteration
        return batch

    def __aiter__(self) -> AsyncIterator[EventBatch]:
        return self

    async def __anext__(self) -> EventBatch:
        batch = self._shape(await self._watch._anext_batch())
        if batch is None:
            raise StopAsyncIteration
        return batch


def open_watch(
    hub: WatchHub,
    *,
    table: str | None,
    key: str | None,
    prefix: str | None,
    start_revision: int | None,
    prev_value: bool,
    skip_noop: bool,
    progress_interval: float | None,
    callback: Callable[[Any], object] | None,
    on_error: Callable[[BaseException], object] | None,
) -> Watch[Any]:
    """Check a watch's arguments, subscribe it, and wrap it for its consumer.

    ``table``/``key`` are already validated names (the caller owns the limits).
    """
    if key is not None and prefix is not None:
        raise InvalidArgument("watch takes a key or a prefix, not both")
    if prefix is not None and not isinstance(prefix, str):
        raise InvalidArgument(f"prefix must be a str, not {type(prefix).__name__}")
    if start_revision is not None and (
        isinstance(start_revision, bool)
        or not isinstance(start_revision, int)
        or start_revision < 1
    ):
        raise InvalidArgument(f"start_revision must be an int >= 1, not {start_revision!r}")
    if progress_interval is not None and (
        isinstance(progress_interval, bool)
        or not isinstance(progress_interval, int | float)
        or not math.isfinite(progress_interval)
        or progress_interval <= 0
    ):
        raise InvalidArgument(
            f"progress_interval must be a positive number of seconds, not {progress_interval!r}"
        )
    if callback is not None and not callable(callback):
        raise InvalidArgument("callback must be callable")
    watcher = hub.subscribe(
        WatchFilter(table, key, prefix or None),
        start_revision,
        prev_value=bool(prev_value),
        skip_noop=bool(skip_noop),
    )
    return Watch(
        hub, watcher, progress_interval=progress_interval, callback=callback, on_error=on_error
    )
