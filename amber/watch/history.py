"""The history window: the last revisions' events, bounded, and its snapshot form.

The window keeps whole revisions, oldest first, at most ``max_revisions`` of
them and at most ``max_bytes`` of the memory they hold (``estimate_bytes``:
the Python objects themselves, not their packed size, which is a third to a
twentieth of it). Trimmed revisions are released for good once their bytes
reach an eighth of ``max_bytes`` (or 4096 of them), so the window never holds
more than ``max_bytes * 9 / 8``. It keeps the store's own ``Change`` objects,
which hold the immutable records: publishing allocates nothing per change,
and events are built only for the watchers that read them. ``floor`` is the oldest revision it can
still serve: every event with a revision ``>= floor`` is in the window, and
a watch asking for less gets ``Compacted(floor)`` (etcd's semantics).
Revisions are contiguous here: only batches that change something get one.

Snapshot chunks (msgpack, one list each; the store's snapshot skips kinds it
does not know, the node hands these to the hub)::

    ["w", HISTORY_FORMAT, floor, [entry, ...]]
    entry  = [revision, [change, ...]]
    change = [table, key, code, value] or [table, key, code, value, prev]
    code   = kind * 4 + prev_mode   kind: 0 put, 1 merge, 2 delete, 3 expire
    prev_mode: 0 the key was absent; 1 ``prev`` follows inline;
               2 ``prev`` is the value of this key's previous change in the
                 stream (most are: it halves the size and shares the object)

Every chunk repeats the same floor. A reader that meets an unknown
``HISTORY_FORMAT`` drops the history (watches then start at the snapshot)
rather than refuse to open the database.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from sys import getsizeof
from typing import Any, Final

from ..errors import Corrupted
from ..model import pack, unpack
from ..store.state import Change, ChangeKind, Record

HISTORY_FORMAT: Final = 1
#: How every history chunk starts once packed: fixarray(4), fixstr(1) "w".
CHUNK_PREFIX: Final = b"\x94\xa1w"
_KINDS: tuple[ChangeKind, ...] = ("put", "merge", "delete", "expire")
_CODES: dict[str, int] = {kind: i * 4 for i, kind in enumerate(_KINDS)}
_CHUNK_EVENTS = 4096
#: What one change costs besides its key and values, measured on CPython 3.11:
#: the ``Change`` (72), its record tuple (80), the record's version int (32)
#: and its slot in the revision's list (8).
CHANGE_BYTES: Final = 192
#: What one revision costs besides its changes: its list of changes (56), the
#: revision and size ints (2 * 32) and its slots in the three backing lists (24).
ENTRY_BYTES: Final = 144
#: Compact the backing lists once this many trimmed entries sit in front ...
_COMPACT = 4096
#: ... or once trimmed entries still held there reach this share of ``max_bytes``.
_DEAD_SHARE = 8

#: ``(revision, changes)``; never changed once appended.
Entry = tuple[int, Sequence[Change]]


@dataclass(frozen=True, slots=True)
class Slice:
    """Revisions ``[start, stop)`` of the window's backing lists, read without a copy."""

    revisions: list[int]
    changes: list[Sequence[Change]]
    start: int
    stop: int


EMPTY = Slice([], [], 0, 0)


def _record(value: Any) -> Record:
    """A stand-in record for a value decoded from a snapshot (events read only the value)."""
    return (value, 0, 0, 0, None)


def value_bytes(value: Any) -> int:
    """The memory a stored value holds: every object in it, as ``sys.getsizeof`` says.

    A packed size would undercount: ``{"a": 1.5}`` packs to 12 bytes and
    takes about 260 as Python objects. Objects shared with other values are
    counted in each, so this errs high, never low.
    """
    kind = type(value)
    if kind is str:
        return getsizeof(value)
    if value is None or kind is bool:
        return 0  # singletons
    if isinstance(value, dict):
        total = getsizeof(value)
        for key, item in value.items():
            total += getsizeof(key) + value_bytes(item)
        return total
    if isinstance(value, list | tuple):
        return getsizeof(value) + sum(value_bytes(item) for item in value)
    return getsizeof(value)


def estimate_bytes(changes: Sequence[Change], floor: int = 0) -> int:
    """The memory one revision's entry keeps alive in the window (see ``value_bytes``).

    A change's previous record is counted only when it is not the record of
    a change still in the window (its ``mod_revision`` is below ``floor``):
    an overwrite's ``prev`` is mostly the key's previous change, one shared
    object, while a delete of a key written long ago keeps that old value
    alive here alone.
    """
    total = ENTRY_BYTES
    for change in changes:
        total += CHANGE_BYTES + getsizeof(change.key)
        record = change.record
        if record is not None:
            total += value_bytes(record[0])
        prev = change.prev
        if prev is not None and prev[2] < floor:
            total += value_bytes(prev[0])
    return total


class History:
    """A bounded window of revisions; see the module doc. Not thread-safe."""

    def __init__(self, max_revisions: int, max_bytes: int) -> None:
        self.max_revisions = max_revisions
        self.max_bytes = max_bytes
        #: Backing lists, ``[head:]`` live; parallel lists rather than a tuple
        #: per revision, so the window adds no object for the GC to track.
        #: Compaction replaces the lists, never edits them, so a reader
        #: holding a ``Slice`` of the old ones stays valid.
        self._revisions: list[int] = []
        self._changes: list[Sequence[Change]] = []
        self._sizes: list[int] = []
        self._head = 0
        self.bytes = 0
        #: Bytes of the trimmed entries still in front of ``_head``.
        self.dead_bytes = 0
        self.floor = 1
        #: The last revision appended (or restored).
        self.revision = 0

    def __len__(self) -> int:
        return len(self._revisions) - self._head

    def reset(self, revision: int, floor: int | None = None) -> None:
        """Empty the window at ``revision``; it serves from ``floor`` (default: next)."""
        self._revisions, self._changes, self._sizes = [], [], []
        self._head, self.bytes, self.dead_bytes = 0, 0, 0
        self.revision = revision
        self.floor = revision + 1 if floor is None else floor

    def append(self, revision: int, changes: Sequence[Change], size: int) -> None:
        """Add the next revision's changes; trims the oldest past the bounds."""
        revisions = self._revisions
        revisions.append(revision)
        self._changes.append(changes)
        self._sizes.append(size)
        self.bytes += size
        self.revision = revision
        if len(revisions) - self._head > self.max_revisions or self.bytes > self.max_bytes:
            self._trim()

    def _trim(self) -> None:
        revisions, sizes = self._revisions, self._sizes
        head = self._head
        while head < len(revisions) and (
            len(revisions) - head > self.max_revisions or self.bytes > self.max_bytes
        ):
            self.bytes -= sizes[head]
            self.dead_bytes += sizes[head]
            self.floor = revisions[head] + 1
            head += 1
        # Trimmed entries stay referenced until the lists are compacted, so
        # compact by their bytes too: a coalesced revision holds up to 512
        # changes, and 4096 of those are 2M changes (~600 MB) kept for nothing.
        if (head >= _COMPACT and head * 2 >= len(revisions)) or (
            head and self.dead_bytes * _DEAD_SHARE >= self.max_bytes
        ):
            # New lists, never an in-place delete: replays may hold the old ones.
            self._revisions = revisions[head:]
            self._changes = self._changes[head:]
            self._sizes = sizes[head:]
            head = 0
            self.dead_bytes = 0
        self._head = head

    def since(self, revision: int) -> Slice:
        """The window's revisions >= ``revision`` (the caller checked the floor).

        Described, not copied: O(log n) however long the replay.
        """
        revisions = self._revisions
        start = bisect_left(revisions, revision, lo=self._head)
        return Slice(revisions, self._changes, start, len(revisions))

    def entries(self, upto: int) -> list[Entry]:
        """A copy of the window's entries with revision <= ``upto``."""
        revisions, head = self._revisions, self._head
        stop = bisect_left(revisions, upto + 1, lo=head)
        return list(zip(revisions[head:stop], self._changes[head:stop], strict=True))

    # -- snapshot chunks ------------------------------------------------------------

    def chunks(self, upto: int, max_bytes: int) -> Iterator[bytes]:
        """Snapshot chunks for the newest ``max_bytes`` of the window up to ``upto``.

        Taken now, encoded lazily. The cap keeps snapshots from copying the
        whole window every time: a node snapshotting every few MB of log
        would otherwise rewrite up to ``max_bytes`` of history each time.
        Only whole revisions, newest first: when the newest one alone is over
        the cap, the chunks carry none and their floor is ``upto + 1``.
        """
        revisions, sizes, head = self._revisions, self._sizes, self._head
        stop = bisect_left(revisions, upto + 1, lo=head)
        start, budget = stop, max_bytes
        while start > head and sizes[start - 1] <= budget:
            budget -= sizes[start - 1]
            start -= 1
        if start == head:
            floor = min(self.floor, upto + 1)
        elif start == stop:
            # Not even the newest revision fits (one value can be larger than
            # the budget): no history, watches resume after the snapshot.
            floor = upto + 1
        else:
            floor = revisions[start]
        entries = list(zip(revisions[start:stop], self._changes[start:stop], strict=True))
        return _encode(floor, entries)

    def load(self, revision: int, chunks: list[bytes | memoryview]) -> str | None:
        """Rebuild the window from snapshot chunks taken at ``revision``.

        Returns a note when the chunks could not be used (the window then
        starts empty at ``revision``).
        """
        self.reset(revision)
        if not chunks:
            return None
        decoder = _Decoder()
        floor = None
        try:
            for chunk in chunks:
                body = unpack(chunk)
                if body[1] != HISTORY_FORMAT:
                    return (
                        f"watch history format {body[1]!r} is unknown (this build reads "
                        f"{HISTORY_FORMAT}); watches start at revision {revision + 1}"
                    )
                floor = body[2]
                for raw in body[3]:
                    revision_, changes = decoder.entry(raw)
                    self._revisions.append(revision_)
                    self._changes.append(changes)
                    # Decoded records carry no revisions: prevs are not counted.
                    self._sizes.append(estimate_bytes(changes))
        except (Corrupted, IndexError, TypeError, ValueError, KeyError) as exc:
            self.reset(revision)
            return f"watch history in the snapshot is unreadable ({exc}); starting it anew"
        ok = (
            isinstance(floor, int)
            and (not self._revisions or self._revisions[-1] == revision)
            and (not self._revisions or self._revisions[0] == floor)
        )
        if not ok:
            self.reset(revision)
            return "watch history in the snapshot does not match it; starting it anew"
        assert isinstance(floor, int)
        self.floor = floor
        self.bytes = sum(self._sizes)
        self._trim()
        return None


def _encode(floor: int, entries: list[Entry]) -> Iterator[bytes]:
    last: dict[tuple[str, str], Any] = {}
    part: list[list[Any]] = []
    count = 0
    for revision, changes in entries:
        encoded: list[list[Any]] = []
        for change in changes:
            table, key = change.table, change.key
            where = (table, key)
            code = _CODES[change.kind]
            value = None if change.record is None else change.record[0]
            if change.prev is None:
                encoded.append([table, key, code, value])
            elif where in last and last[where] is change.prev[0]:
                encoded.append([table, key, code + 2, value])
            else:
                encoded.append([table, key, code + 1, value, change.prev[0]])
            last[where] = value
        part.append([revision, encoded])
        count += len(encoded)
        if count >= _CHUNK_EVENTS:
            yield pack(["w", HISTORY_FORMAT, floor, part])
            part, count = [], 0
    if part or not entries:
        yield pack(["w", HISTORY_FORMAT, floor, part])


class _Decoder:
    """Turns encoded entries back into changes, following back-references."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], Any] = {}

    def entry(self, raw: Any) -> Entry:
        revision, encoded = raw
        changes: list[Change] = []
        for change in encoded:
            table, key, code, value = change[0], change[1], change[2], change[3]
            kind, mode = _KINDS[code // 4], code % 4
            where = (table, key)
            if mode == 0:
                prev = None
            elif mode == 1:
                prev = _record(change[4])
            elif mode == 2:
                prev = _record(self.last[where])
            else:
                raise ValueError(f"unknown prev mode {mode}")
            self.last[where] = value
            record = _record(value) if kind in ("put", "merge") else None
            changes.append(Change(table, key, kind, record, prev))
        return revision, changes
