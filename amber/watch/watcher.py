"""One subscription's state: its filter, history replay, and bounded queue.

Sans-I/O: a :class:`Watcher` never blocks and owns no thread. The hub
``offer``s it whole revisions (on the publishing thread, under the hub's
lock); its consumer ``poll``s them. A consumer with nothing to read ``arm``s
a one-shot wake-up instead of spinning; how it waits (a thread event, an
asyncio future) is the stream layer's business.

Order of delivery: the history slice taken at subscription, then the live
queue. The hub takes the slice and registers the watcher atomically with
respect to publishing, so the two meet without a gap or a duplicate.

Overflow: a revision that would push the queue past ``limit`` events (or
``limit_bytes`` of the memory they hold, as the history counts it) is
refused whole (unless the queue is empty, so one huge transaction still gets
through), the watcher ends with ``Lagged(revision - 1)`` and the consumer
receives everything queued before the cut, then the error. Every revision
below the refused one was either queued or had nothing for this watcher, so
resuming from ``revision`` misses nothing and repeats nothing.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import AmberError, Lagged
from .event import Event, EventBatch, event_of
from .history import EMPTY, Slice


@dataclass(frozen=True, slots=True)
class WatchFilter:
    """Which changes a watch wants: a table (or all), then a key or a prefix."""

    table: str | None = None
    key: str | None = None
    prefix: str | None = None

    def matches(self, table: str, key: str) -> bool:
        if self.table is not None and table != self.table:
            return False
        if self.key is not None:
            return key == self.key
        return self.prefix is None or key.startswith(self.prefix)


class Watcher:
    """A subscription's replay cursor and live queue; see the module doc.

    Thread-safety: ``offer`` and ``end`` may run on any thread while one
    consumer calls ``poll``/``arm``; an internal lock orders them.
    """

    __slots__ = (
        "_end",
        "_lock",
        "_queue",
        "_queued",
        "_queued_bytes",
        "_replay",
        "_replay_at",
        "_sizes",
        "_wake",
        "filter",
        "limit",
        "limit_bytes",
        "min_revision",
        "prev_value",
        "skip_noop",
    )

    def __init__(
        self,
        filter: WatchFilter,
        *,
        limit: int,
        limit_bytes: int | None = None,
        min_revision: int = 1,
        prev_value: bool = True,
        skip_noop: bool = False,
    ) -> None:
        self.filter = filter
        self.limit = limit
        self.limit_bytes = limit_bytes
        #: Revisions below this one are neither replayed nor queued.
        self.min_revision = min_revision
        self.prev_value = prev_value
        self.skip_noop = skip_noop
        self._lock = threading.Lock()
        #: One entry per revision; its revision is that of its (first) event.
        self._queue: deque[Sequence[Event]] = deque()
        self._queued = 0
        #: The queued revisions' sizes, in step with ``_queue``.
        self._sizes: deque[int] = deque()
        self._queued_bytes = 0
        self._replay = EMPTY
        self._replay_at = 0
        self._end: AmberError | None = None
        self._wake: Callable[[], None] | None = None

    def set_replay(self, history: Slice) -> None:
        """Replay a slice of the history before the live queue (before any offer)."""
        self._replay, self._replay_at = history, history.start

    # -- publisher side (the hub's lock is held) --------------------------------

    def offer(self, revision: int, events: Sequence[Event], size: int = 0) -> bool:
        """Queue one revision's matching events; False if that overflowed the watcher.

        ``events`` (never empty) is kept as given, not copied: the hub shares
        one tuple among all the watchers of a one-change revision. ``size`` is
        the memory they hold, for ``limit_bytes``.
        """
        if revision < self.min_revision:
            return True
        with self._lock:
            if self._end is not None:
                return True
            limit_bytes = self.limit_bytes
            if self._queued and (
                self._queued + len(events) > self.limit
                or (limit_bytes is not None and self._queued_bytes + size > limit_bytes)
            ):
                self._end = Lagged(revision - 1)
                ok = False
            else:
                self._queue.append(events)
                self._sizes.append(size)
                self._queued += len(events)
                self._queued_bytes += size
                ok = True
            wake, self._wake = self._wake, None
        if wake is not None:
            wake()
        return ok

    def end(self, error: AmberError) -> None:
        """Stop the watcher: the consumer gets what is queued, then ``error``."""
        with self._lock:
            if self._end is None:
                self._end = error
            wake, self._wake = self._wake, None
        if wake is not None:
            wake()

    @property
    def ended(self) -> bool:
        return self._end is not None

    def pending(self) -> bool:
        """Whether anything (replay or queue) is waiting for the consumer."""
        with self._lock:
            return bool(self._queue) or self._replay_at < self._replay.stop

    # -- consumer side ------------------------------------------------------------

    def poll(self) -> EventBatch | None:
        """The next revision's events, or None when nothing is ready yet.

        Raises the watcher's end error (``Lagged``, ``Closed``) once everything
        queued before the end was taken.
        """
        replay = self._replay
        while self._replay_at < replay.stop:
            revision = replay.revisions[self._replay_at]
            changes = replay.changes[self._replay_at]
            self._replay_at += 1
            if revision < self.min_revision:
                continue
            wanted = self.filter.matches
            batch = self._shape(
                revision, [event_of(revision, c) for c in changes if wanted(c.table, c.key)]
            )
            if batch is not None:
                return batch
        self._replay, self._replay_at = EMPTY, 0
        while True:
            with self._lock:
                if not self._queue:
                    if self._end is not None:
                        raise self._end
                    return None
                queued = self._queue.popleft()
                self._queued -= len(queued)
                self._queued_bytes -= self._sizes.popleft()
            batch = self._shape(queued[0].revision, queued)
            if batch is not None:
                return batch

    def arm(self, wake: Callable[[], None]) -> bool:
        """Call ``wake`` (once, from the publisher) when there is something to poll.

        Returns False, without arming, if there already is: poll again.
        """
        with self._lock:
            if self._queue or self._end is not None or self._replay_at < self._replay.stop:
                return False
            self._wake = wake
            return True

    def disarm(self) -> None:
        """Forget an armed wake-up (the consumer stopped waiting)."""
        with self._lock:
            self._wake = None

    def _shape(self, revision: int, events: Sequence[Event]) -> EventBatch | None:
        """Apply the per-watcher options on the consumer's thread, not the publisher's."""
        if self.skip_noop:
            events = [e for e in events if not e.is_noop]
        if not events:
            return None
        if not self.prev_value:
            events = [e.without_prev() for e in events]
        return EventBatch(revision, events)
