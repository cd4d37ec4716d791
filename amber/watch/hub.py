"""The watch hub: turns applied batches into events, keeps history, fans out.

The node registers :meth:`WatchHub.publish` as a listener before recovery,
so replaying the log rebuilds the history window exactly as it was built
live. ``publish`` runs on the applying thread (the group-commit leader), one
batch at a time in revision order, so it must never block: it appends to the
history and offers each matching watcher one non-blocking, bounded append.

Cost per batch: the history keeps the store's change objects and sizes the
new values' objects (``history.value_bytes``) to bound its memory; an
:class:`Event` is built only for a change that some live watcher matches
(and shared by all of them, with its lazily computed diff). The fan-out is
O(matching watchers), found through indexes:

- exact keys: ``table -> key -> watchers``;
- prefixes: ``table -> prefix -> watchers``, probed once per distinct prefix
  length in use (``key[:n]`` for each such ``n``);
- watches of every table: checked one by one (they are expected to be few).

Subscribing takes the history slice and registers the watcher under the
same lock that ``publish`` holds, so replay and live delivery meet without
a gap or a duplicate.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

from ..config import Config
from ..errors import Closed, Compacted, Lagged
from ..store.state import ApplyResult, Change
from .dispatch import Dispatcher
from .event import Event, event_of
from .history import CHUNK_PREFIX, History, estimate_bytes
from .watcher import Watcher, WatchFilter

__all__ = ["WatchHub"]

log = logging.getLogger(__name__)

_Set = dict[Watcher, None]  # insertion-ordered set


class _TableIndex:
    """The watchers of one table, by exact key and by prefix."""

    __slots__ = ("keys", "lengths", "prefixes")

    def __init__(self) -> None:
        self.keys: dict[str, _Set] = {}
        self.prefixes: dict[str, _Set] = {}
        #: Distinct prefix lengths in use, ascending, with how many prefixes each.
        self.lengths: dict[int, int] = {}

    def add(self, watcher: Watcher) -> None:
        f = watcher.filter
        if f.key is not None:
            self.keys.setdefault(f.key, {})[watcher] = None
            return
        prefix = f.prefix or ""
        bucket = self.prefixes.get(prefix)
        if bucket is None:
            bucket = self.prefixes[prefix] = {}
            n = len(prefix)
            self.lengths[n] = self.lengths.get(n, 0) + 1
            self.lengths = dict(sorted(self.lengths.items()))
        bucket[watcher] = None

    def remove(self, watcher: Watcher) -> None:
        f = watcher.filter
        if f.key is not None:
            bucket = self.keys.get(f.key)
            if bucket is not None:
                bucket.pop(watcher, None)
                if not bucket:
                    del self.keys[f.key]
            return
        prefix = f.prefix or ""
        bucket = self.prefixes.get(prefix)
        if bucket is None:
            return
        bucket.pop(watcher, None)
        if not bucket:
            del self.prefixes[prefix]
            n = len(prefix)
            self.lengths[n] -= 1
            if not self.lengths[n]:
                del self.lengths[n]

    def empty(self) -> bool:
        return not self.keys and not self.prefixes

    def match(self, key: str, into: list[_Set]) -> None:
        bucket = self.keys.get(key)
        if bucket:
            into.append(bucket)
        prefixes = self.prefixes
        size = len(key)
        for n in self.lengths:
            if n > size:
                break
            bucket = prefixes.get(key[:n])
            if bucket:
                into.append(bucket)


class WatchHub:
    """Events, history and watchers of one store; see the module doc.

    Thread-safe: ``publish`` is called by one thread at a time (in revision
    order); everything else may be called from any thread.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._history = History(config.history_revisions, config.history_bytes)
        self._tables: dict[str, _TableIndex] = {}
        self._everywhere: _Set = {}
        self._watchers = 0
        self._closed = False
        self._restoring: list[bytes | memoryview] = []
        #: Runs callback watches (its thread starts with the first one).
        self.dispatcher = Dispatcher()
        #: Counters for stats.
        self.events = 0
        self.lagged = 0

    # -- reading the state ------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The last revision published."""
        return self._history.revision

    @property
    def oldest_revision(self) -> int:
        """The oldest revision a watch can still start from."""
        return self._history.floor

    # -- publishing ---------------------------------------------------------------------

    def publish(self, result: ApplyResult) -> None:
        """Record one applied batch and offer it to the matching watchers. Never blocks."""
        changes = result.changes
        if not changes:
            return  # a failed or empty batch: no revision
        revision = result.revision
        with self._lock:
            if revision <= self._history.revision:
                log.warning(
                    "watch hub skipped revision %d, already at %d", revision, self._history.revision
                )
                return
            size = estimate_bytes(changes, self._history.floor)
            self._history.append(revision, changes, size)
            self.events += len(changes)
            if self._watchers:
                if len(changes) == 1:
                    self._fan_out_one(revision, changes[0], size)
                else:
                    self._fan_out(revision, changes, size)

    def _fan_out_one(self, revision: int, change: Change, size: int) -> None:
        """``_fan_out`` for the common one-change batch.

        The hot path of a watched write, so it allocates only what it hands
        out: one event, in one tuple shared by every matching watcher.
        """
        key = change.key
        events: tuple[Event, ...] | None = None
        lagged: list[Watcher] | None = None
        index = self._tables.get(change.table)
        if index is not None:
            length = len(key)
            for n in index.lengths:
                if n > length:
                    break
                bucket = index.prefixes.get(key[:n])
                if bucket:
                    if events is None:
                        events = (event_of(revision, change),)
                    for watcher in bucket:
                        if not watcher.offer(revision, events, size):
                            lagged = [*(lagged or ()), watcher]
            bucket = index.keys.get(key)
            if bucket:
                if events is None:
                    events = (event_of(revision, change),)
                for watcher in bucket:
                    if not watcher.offer(revision, events, size):
                        lagged = [*(lagged or ()), watcher]
        for watcher in self._everywhere:
            if watcher.filter.matches(change.table, key):
                if events is None:
                    events = (event_of(revision, change),)
                if not watcher.offer(revision, events, size):
                    lagged = [*(lagged or ()), watcher]
        for watcher in lagged or ():
            self.lagged += 1
            self._unindex(watcher)

    def _fan_out(self, revision: int, changes: list[Change], size: int) -> None:
        tables = self._tables
        everywhere = self._everywhere
        found: dict[Watcher, list[Event]] = {}
        buckets: list[_Set] = []
        for change in changes:
            table, key = change.table, change.key
            index = tables.get(table)
            if index is not None:
                index.match(key, buckets)
            event: Event | None = None
            for bucket in buckets:
                for watcher in bucket:
                    if event is None:
                        event = event_of(revision, change)
                    mine = found.get(watcher)
                    if mine is None:
                        found[watcher] = [event]
                    else:
                        mine.append(event)
            buckets.clear()
            for watcher in everywhere:
                if watcher.filter.matches(table, key):
                    if event is None:
                        event = event_of(revision, change)
                    found.setdefault(watcher, []).append(event)
        # A watcher's share of the revision's size, by its events' count.
        each = size // len(changes) + 1
        lagged = [w for w, mine in found.items() if not w.offer(revision, mine, each * len(mine))]
        for watcher in lagged:
            self.lagged += 1
            self._unindex(watcher)

    # -- subscribing ----------------------------------------------------------------------

    def subscribe(
        self,
        filter: WatchFilter,
        start_revision: int | None = None,
        *,
        prev_value: bool = True,
        skip_noop: bool = False,
    ) -> Watcher:
        """Register a watcher; with ``start_revision``, history from there comes first.

        Raises ``Compacted`` if ``start_revision`` is older than the window
        and ``Closed`` after ``close``. A ``start_revision`` past the current
        revision waits for it.
        """
        with self._lock:
            if self._closed:
                raise Closed("the database is closed")
            history = self._history
            current = history.revision
            first = current + 1 if start_revision is None else start_revision
            watcher = Watcher(
                filter,
                limit=self.config.watch_queue,
                limit_bytes=self.config.watch_queue_bytes,
                min_revision=first,
                prev_value=prev_value,
                skip_noop=skip_noop,
            )
            if first <= current:
                if first < history.floor:
                    raise Compacted(first, history.floor)
                watcher.set_replay(history.since(first))
            self._index(watcher)
            return watcher

    def unsubscribe(self, watcher: Watcher, error: Closed | None = None) -> None:
        """Stop a watcher; its consumer reads what is queued, then ``error``."""
        with self._lock:
            self._unindex(watcher)
        watcher.end(error or Closed("the watch was closed"))

    def progress(self) -> int:
        """The last revision published: once a consumer has drained its watch,
        it has seen every matching event up to this revision.
        """
        with self._lock:
            return self._history.revision

    def idle_revision(self, watcher: Watcher) -> int | None:
        """The revision ``watcher`` is complete up to, if nothing is waiting for it."""
        with self._lock:
            if watcher.pending() or watcher.ended:
                return None
            return self._history.revision

    def _index(self, watcher: Watcher) -> None:
        table = watcher.filter.table
        if table is None:
            self._everywhere[watcher] = None
        else:
            index = self._tables.get(table)
            if index is None:
                index = self._tables[table] = _TableIndex()
            index.add(watcher)
        self._watchers += 1

    def _unindex(self, watcher: Watcher) -> None:
        table = watcher.filter.table
        if table is None:
            if watcher in self._everywhere:
                del self._everywhere[watcher]
                self._watchers -= 1
            return
        index = self._tables.get(table)
        if index is None:
            return
        before = _contains(index, watcher)
        index.remove(watcher)
        if before:
            self._watchers -= 1
        if index.empty():
            del self._tables[table]

    # -- snapshots and recovery -------------------------------------------------------------

    def divert(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Pass a snapshot's chunks through, keeping the history ones for ``restore``."""
        for chunk in chunks:
            if chunk[:3] == CHUNK_PREFIX:
                self._restoring.append(chunk)
            else:
                yield chunk

    def restore(self, revision: int) -> str | None:
        """Start the history at a loaded snapshot's revision, from its diverted chunks.

        Returns a note when the snapshot's history could not be used.
        """
        chunks, self._restoring = self._restoring, []
        with self._lock:
            note = self._history.load(revision, chunks)
        if note is not None:
            log.warning("recovery: %s", note)
        return note

    def reinstall(self, revision: int) -> None:
        """Restart at a snapshot installed over the live state (a replica far behind).

        Every watch ends with ``Lagged`` at the last revision it could have
        seen: the revisions between that and the snapshot were never applied
        here, so resuming gives ``Compacted`` unless the snapshot's history
        covers them. The history restarts from the diverted chunks.
        """
        with self._lock:
            last = self._history.revision
            watchers = self._detach_all()
        for watcher in watchers:
            watcher.end(Lagged(last))
        self.restore(revision)

    def image_chunks(self, upto: int) -> Iterator[bytes]:
        """Snapshot chunks of the history up to revision ``upto`` (sliced now).

        At most ``snapshot_history_bytes`` (and never more than
        ``snapshot_wal_bytes``, estimated): every open decodes it, so it is
        kept small; after a restart the window reaches back that far plus the
        log replayed after the snapshot — as far as the log reaches.
        """
        config = self.config
        with self._lock:
            return self._history.chunks(
                upto,
                min(
                    config.history_bytes,
                    config.snapshot_history_bytes,
                    config.snapshot_wal_bytes,
                ),
            )

    # -- lifecycle -----------------------------------------------------------------------------

    def _detach_all(self) -> list[Watcher]:
        """Unregister every watcher and return them (lock held)."""
        watchers = list(self._everywhere)
        for index in self._tables.values():
            for bucket in (*index.keys.values(), *index.prefixes.values()):
                watchers.extend(bucket)
        self._everywhere.clear()
        self._tables.clear()
        self._watchers = 0
        return watchers

    def close(self) -> None:
        """End every watch with ``Closed`` (after what is queued); idempotent."""
        with self._lock:
            self._closed = True
            watchers = self._detach_all()
        for watcher in watchers:
            watcher.end(Closed("the database was closed"))
        self.dispatcher.stop()  # after delivering what callback watches had queued

    def stats(self) -> dict[str, int]:
        """Watchers, history window and counters."""
        with self._lock:
            return {
                "watchers": self._watchers,
                "revision": self._history.revision,
                "oldest_revision": self._history.floor,
                "history_revisions": len(self._history),
                "history_bytes": self._history.bytes,
                "events": self.events,
                "lagged": self.lagged,
            }


def _contains(index: _TableIndex, watcher: Watcher) -> bool:
    f = watcher.filter
    if f.key is not None:
        return watcher in index.keys.get(f.key, {})
    return watcher in index.prefixes.get(f.prefix or "", {})
