"""The Raft journal: PySyncObj's log and its term/vote, durable before a node answers.

Why
---
PySyncObj's own ``FileJournal`` writes through ``mmap`` and never fsyncs,
and replaces its meta file without an fsync either. A Raft node must never
acknowledge an entry or a vote that a power cut can take back: the leader
counts that acknowledgement towards a commit majority. :class:`DurableJournal`
is the replacement, built on Amber's file layer (so tests can cut the power
with :class:`~amber.persistence.crashfiles.CrashFiles`) and framing.

Guarantees
----------
- ``add`` only buffers (no I/O). :meth:`DurableJournal.sync` writes the
  buffer and fdatasyncs once: group commit, many entries per sync. The Raft
  layer calls it before any message that reflects the journal leaves the
  node and before the leader counts its own entries for a commit.
- ``setCurrentTerm`` is durable when it returns.
- ``setRaftCommitIndex`` is lazy: persisted by ``onOneSecondTimer`` and at
  close, after a journal sync (a commit index never covers entries a crash
  could drop; a stale one is safe, Raft learns the commit index again).
- ``deleteEntriesTo`` (compaction) and ``clear`` replace the file atomically.
- **Truncation is lazy** (the "already-applied entries" fix). PySyncObj
  answers a re-sent ``append_entries`` whose entries it already holds by
  deleting everything after ``prevLogIdx`` and adding the *same* entries
  again. Written naively, that opens a window in which entries this node
  already acknowledged are not on disk. Here ``deleteEntriesFrom`` only sets
  the removed tail aside as *pending*; an ``add`` with the same idx, term and
  command restores the pending entry without writing anything (Log Matching:
  same idx and term means same entry). Only the first *differing* add — a
  real conflict — writes one truncate record. Pending entries that are never
  re-added stay in the file: after a restart the node holds them again,
  which is the state it had before PySyncObj dropped them without a conflict
  (Raft only deletes on conflict), and a later conflicting add still
  truncates them.
- **Committed entries never change.** If a conflicting add would replace an
  entry at or below the highest commit index this journal has seen (given
  by ``setRaftCommitIndex`` or loaded at open), Raft safety is already
  broken: the journal logs at critical level and raises
  :class:`~amber.errors.Corrupted` instead of writing, so the node stops
  rather than silently changing committed state.
- ``add``, the deletes, ``clear`` and the meta setters run on PySyncObj's
  tick thread; :meth:`~DurableJournal.sync` and :meth:`~DurableJournal.stats`
  may be called from any thread. After a failed write or fsync every later
  write raises :class:`~amber.errors.StorageFailed` (the kernel may have
  dropped the dirty pages): reopen to recover from what is durable.

Files in the journal folder
---------------------------
``journal``
    A file header (:mod:`~amber.persistence.framing`, magic ``AMBRAFTJ``,
    version 1, seq = generation, bumped at every rewrite) and then frames
    whose body is a msgpack array, one of::

        [1, idx, term, command]   an entry (command is bin)
        [2, from_idx]             drop every entry with idx >= from_idx

    Recovery replays the records in order. Entry idxs run on by one (the
    first entry, and the first after the log became empty, may start
    anywhere); a truncate must fall inside the entries. A torn frame (the
    framing module's rule) is accepted only at the end: the file is cut
    there and a note kept in ``notes``. Anything else raises ``Corrupted``
    naming the file and offset.
``meta``
    The same file header (magic ``AMBRAFTM``, seq 0) and exactly one frame:
    a msgpack map ``{"term": int, "voted": str | None, "commit": int | None}``.

Both files are only ever replaced whole: write ``<name>.tmp``, fsync,
rename over, fsync the folder. The meta file is created before the journal
file, so a journal file without a readable meta file is damage (the term and
vote this node promised are unknown) and raises ``Corrupted``. Without a
journal file the folder is a fresh start: a readable meta file (a crash
between creating the two) keeps its term and vote, a damaged one is noted
and replaced.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, SupportsIndex, overload

import msgpack
from pysyncobj.journal import Journal

from ..errors import Closed, Corrupted, InvalidArgument, StorageFailed
from ..persistence.files import AppendFile, FileLayer, OsFiles
from ..persistence.framing import (
    FILE_HEADER_SIZE,
    FrameReader,
    Stop,
    decode_file_header,
    encode_file_header,
    encode_frame,
)

__all__ = ["JOURNAL_MAGIC", "META_MAGIC", "VERSION", "DurableJournal", "Entry"]

JOURNAL_MAGIC = b"AMBRAFTJ"
META_MAGIC = b"AMBRAFTM"
VERSION = 1
JOURNAL_NAME = "journal"
META_NAME = "meta"
_ENTRY = 1
_TRUNCATE = 2
#: Rewrites hand the file layer this much at a time.
_CHUNK = 1 << 20

#: One Raft log entry as PySyncObj holds it: ``(command, idx, term)``.
Entry = tuple[bytes, int, int]

log = logging.getLogger(__name__)


def _entry_frame(command: bytes, idx: int, term: int) -> bytes:
    return encode_frame(msgpack.packb((_ENTRY, idx, term, command)))


@dataclass(slots=True)
class _Meta:
    term: int
    voted: str | None
    commit: int | None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _unpack(body: memoryview) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ValueError(f"undecodable msgpack ({exc})") from exc


def _decode_meta(data: bytes) -> _Meta | tuple[str, int]:
    """The meta file's content, or ``(what is wrong, offset)``."""
    head = decode_file_header(data, META_MAGIC)
    if isinstance(head, str):
        return head, 0
    if head[0] != VERSION:
        return f"unsupported format version {head[0]}", 8
    reader = FrameReader(data, FILE_HEADER_SIZE)
    frames = list(reader)
    if reader.stop is not Stop.END:
        kind = reader.stop.value if reader.stop else "bad"
        return f"{kind} frame: {reader.reason}", reader.offset
    if len(frames) != 1:
        return f"{len(frames)} frames where exactly one was expected", FILE_HEADER_SIZE
    offset, body = frames[0]
    try:
        fields = _unpack(body)
    except ValueError as exc:
        return str(exc), offset
    if not isinstance(fields, dict):
        return "the record is not a map", offset
    term: Any = fields.get("term")
    voted: Any = fields.get("voted")
    commit: Any = fields.get("commit")
    if not _is_int(term) or not (voted is None or isinstance(voted, str)):
        return "the record has no valid term and vote", offset
    if not (commit is None or _is_int(commit)):
        return "the record has an invalid commit index", offset
    return _Meta(term, voted, commit)


class DurableJournal(Journal):  # type: ignore[misc]
    """PySyncObj's journal, fsynced and CRC-framed; see the module doc for the guarantees."""

    def __init__(self, folder: str | os.PathLike[str], files: FileLayer | None = None) -> None:
        """Open (recovering) or create the journal in ``folder``.

        Raises ``Corrupted`` for damage recovery must not paper over and
        ``StorageFailed`` when the disk refuses.
        """
        self._files = files or OsFiles()
        self._folder = os.fspath(folder)
        self._path = os.path.join(self._folder, JOURNAL_NAME)
        self._meta_path = os.path.join(self._folder, META_NAME)
        #: What recovery repaired (torn tails cut, a damaged meta file replaced).
        self.notes: list[str] = []
        # Lock order: _io, then _state. add() takes only _state, so it never
        # waits for another thread's fsync.
        self._io = threading.RLock()
        self._state = threading.Lock()
        self._entries: list[Entry] = []
        #: Entries deleted by deleteEntriesFrom that the file still holds after _entries.
        self._pending: deque[Entry] = deque()
        self._buffer = bytearray()
        #: Bumped at every change to the buffer; durable when _synced_version equals it.
        self._version = 0
        self._synced_version = 0
        self._term = 0
        self._voted: str | None = None
        self._commit: int | None = None
        self._commit_saved: int | None = None
        #: The highest commit index seen: entries at or below it must never change.
        self._commit_floor = 0
        self._generation = 0
        self._file: AppendFile | None = None
        self._failed: StorageFailed | None = None
        self._closed = False
        self._size = 0
        self._bytes_written = 0
        self._syncs = 0
        self._rewrites = 0
        self._meta_writes = 0
        self._truncations = 0
        self._restored = 0
        try:
            self._open()
        except OSError as exc:
            self._drop_handle()
            raise StorageFailed(f"cannot open the Raft journal in {self._folder}: {exc}") from exc
        except BaseException:
            self._drop_handle()
            raise

    # -- opening ----------------------------------------------------------------

    def _open(self) -> None:
        files = self._files
        self._make_folder()
        for name in (JOURNAL_NAME, META_NAME):
            tmp = os.path.join(self._folder, name + ".tmp")
            if files.exists(tmp):  # an interrupted replacement; the real file is intact
                files.remove(tmp)
        fresh = not files.exists(self._path)
        self._load_meta(fresh)
        if fresh:
            self._write_meta()  # before the journal: a journal file always has its meta
            self._rewrite([])
            return
        self._recover()
        self._file = files.open_append(self._path)
        # What recovery read may sit only in the page cache of a crashed process.
        self._file.sync()
        self._size = self._file.size

    def _make_folder(self) -> None:
        files = self._files
        missing: list[str] = []
        probe = os.path.abspath(self._folder)
        while not files.exists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        files.makedirs(self._folder)
        for created in reversed(missing):
            files.fsync_dir(os.path.dirname(created))

    def _load_meta(self, fresh: bool) -> None:
        path = self._meta_path
        if not self._files.exists(path):
            if fresh:
                return
            raise Corrupted(
                "the Raft journal has no meta file beside it, so the term and vote this node "
                "promised are unknown: restore the folder from a backup, or remove the node "
                "from the cluster and add it back with an empty folder",
                path,
            )
        found = _decode_meta(self._files.read_bytes(path))
        if isinstance(found, tuple):
            why, offset = found
            if fresh:
                self.notes.append(f"replaced damaged {META_NAME} of a journal never created: {why}")
                return
            raise Corrupted(
                f"Raft meta file is damaged ({why}), so the term and vote this node promised are "
                "unknown: restore the folder from a backup, or remove the node from the cluster "
                "and add it back with an empty folder",
                path,
                offset,
            )
        self._term, self._voted = found.term, found.voted
        if not fresh:  # without the journal, a commit index would point at nothing
            self._commit = self._commit_saved = found.commit
            self._commit_floor = found.commit or 0

    def _recover(self) -> None:
        path = self._path
        data = self._files.read_bytes(path)
        head = decode_file_header(data, JOURNAL_MAGIC)
        if isinstance(head, str):
            raise Corrupted(f"Raft journal header is damaged: {head}", path, 0)
        version, self._generation = head
        if version != VERSION:
            raise Corrupted(f"unsupported Raft journal format version {version}", path, 8)
        entries: list[Entry] = []
        reader = FrameReader(data, FILE_HEADER_SIZE)
        for offset, body in reader:
            self._replay(entries, body, offset)
        end = reader.offset
        if reader.stop is Stop.TORN:
            self._files.truncate(path, end)
            self.notes.append(
                f"truncated torn tail of the Raft journal {path} at offset {end} "
                f"({len(data) - end} bytes)"
            )
        elif reader.stop is not Stop.END:
            raise Corrupted(f"Raft journal is damaged: {reader.reason}", path, end)
        self._entries = entries
        if entries and self._commit is not None and self._commit > entries[-1][1]:
            self.notes.append(
                f"lowered the stored commit index {self._commit} to the journal's last "
                f"entry {entries[-1][1]}"
            )
            self._commit = entries[-1][1]

    def _replay(self, entries: list[Entry], body: memoryview, offset: int) -> None:
        path = self._path
        try:
            record = _unpack(body)
        except ValueError as exc:
            raise Corrupted(f"Raft journal record is not readable: {exc}", path, offset) from exc
        if not isinstance(record, list) or not record:
            raise Corrupted("Raft journal record is not a non-empty array", path, offset)
        kind = record[0]
        if kind == _ENTRY and len(record) == 4:
            _, idx, term, command = record
            if not (_is_int(idx) and _is_int(term) and isinstance(command, bytes)):
                raise Corrupted("Raft journal entry has invalid fields", path, offset)
            if entries and idx != entries[-1][1] + 1:
                raise Corrupted(
                    f"Raft journal entry {idx} follows entry {entries[-1][1]}", path, offset
                )
            entries.append((command, idx, term))
        elif kind == _TRUNCATE and len(record) == 2:
            start = record[1]
            if not (_is_int(start) and entries and entries[0][1] <= start <= entries[-1][1]):
                span = f"{entries[0][1]}..{entries[-1][1]}" if entries else "none"
                raise Corrupted(
                    f"Raft journal truncates from {start!r} but holds entries {span}", path, offset
                )
            del entries[start - entries[0][1] :]
        else:
            raise Corrupted(f"unknown Raft journal record kind {kind!r}", path, offset)

    # -- the log ------------------------------------------------------------------

    @overload
    def __getitem__(self, item: SupportsIndex) -> Entry: ...

    @overload
    def __getitem__(self, item: slice) -> list[Entry]: ...

    def __getitem__(self, item: SupportsIndex | slice) -> Entry | list[Entry]:
        """Entries by position (not raft index), like a list: ints, negative ints, slices."""
        return self._entries[item]

    def __len__(self) -> int:
        """Entries in the log (pending ones not counted)."""
        return len(self._entries)

    def add(self, command: bytes, idx: int, term: int) -> None:
        """Append an entry in memory; durable only after :meth:`sync`.

        ``idx`` must follow the last entry (``InvalidArgument`` otherwise).
        Re-adding a pending entry (same idx, term, command) writes nothing;
        a different one truncates the pending tail first — or raises
        ``Corrupted`` when that would change a committed entry.
        """
        entry = (command, idx, term)
        with self._state:
            self._check_writable()
            entries = self._entries
            if entries and idx != entries[-1][1] + 1:
                raise InvalidArgument(
                    f"journal add of entry {idx} after entry {entries[-1][1]}: indexes must "
                    "run on by one"
                )
            pending = self._pending
            if pending:
                if pending[0] == entry:
                    entries.append(pending.popleft())
                    self._restored += 1
                    return
                self._truncate_pending(entry)
            self._buffer += _entry_frame(command, idx, term)
            self._version += 1
            entries.append(entry)

    def _truncate_pending(self, replacement: Entry) -> None:
        """Drop the pending tail for good: a conflicting entry replaces it."""
        _, first, first_term = self._pending[0]
        if first <= self._commit_floor:
            message = (
                f"Raft safety violation: committed entry {first} (term {first_term}; commit "
                f"index {self._commit_floor}) would be replaced by entry {replacement[1]} "
                f"(term {replacement[2]}); refusing to change committed state: stop this node "
                "and compare its data with the other members"
            )
            log.critical(message)
            raise Corrupted(message, self._path)
        self._buffer += encode_frame(msgpack.packb((_TRUNCATE, first)))
        self._version += 1
        self._pending.clear()
        self._truncations += 1

    def deleteEntriesFrom(self, entry_from: int) -> None:
        """Remove the entries from position ``entry_from`` on (lazily, see the module doc)."""
        with self._state:
            entries = self._entries
            start = slice(entry_from, None).indices(len(entries))[0]
            if start < len(entries):
                self._pending.extendleft(reversed(entries[start:]))
                del entries[start:]

    def deleteEntriesTo(self, entry_to: int) -> None:
        """Compaction: drop the entries before position ``entry_to``; the file is replaced whole."""
        with self._io, self._state:
            self._check_writable()
            start = slice(entry_to, None).indices(len(self._entries))[0]
            if start == 0:
                return
            kept = self._entries[start:]
            self._guarded_rewrite([*kept, *self._pending])
            self._entries = kept

    def clear(self) -> None:
        """Empty the journal; durable on return (the file is replaced atomically)."""
        with self._io, self._state:
            self._check_writable()
            self._guarded_rewrite([])
            self._entries = []
            self._pending.clear()

    def sync(self) -> bool:
        """Make every added entry durable: one write and one fdatasync; False if clean.

        Thread-safe. When another thread's sync is under way this waits for
        it, so a True or False answer both mean "durable now".
        """
        if self._synced_version == self._version:
            return False
        with self._io:
            with self._state:
                if self._synced_version == self._version:
                    return False
                self._check_writable()
                data, self._buffer = self._buffer, bytearray()
                version = self._version
                handle = self._file
            assert handle is not None  # _check_writable: open, so there is a handle
            try:
                if data:
                    handle.write(data)
                handle.sync()
            except OSError as exc:
                raise self._fail("write or fsync of the Raft journal", exc) from exc
            with self._state:
                self._synced_version = version
                self._bytes_written += len(data)
                self._size = handle.size
                self._syncs += 1
            return True

    # -- term, vote, commit index -------------------------------------------------

    def setCurrentTerm(self, term: int, voted_for: str | None) -> None:
        """Record the term and vote; durable when this returns."""
        with self._io:
            with self._state:
                self._check_writable()
                self._term, self._voted = term, voted_for
            self._save_meta()

    def getCurrentTerm(self) -> int:
        return self._term

    def getVotedForNodeId(self) -> str | None:
        return self._voted

    def setRaftCommitIndex(self, index: int) -> None:
        """Remember the commit index; persisted lazily (``onOneSecondTimer``, close)."""
        with self._state:
            self._commit = index
            self._commit_floor = max(self._commit_floor, index)

    def getRaftCommitIndex(self) -> int:
        """The stored commit index, or 1 (PySyncObj's start) when none was stored."""
        return 1 if self._commit is None else self._commit

    def onOneSecondTimer(self) -> None:
        """Persist a changed commit index, after the entries it covers are synced."""
        if self._commit != self._commit_saved and not self._closed:
            with self._io:
                self.sync()
                self._save_meta()

    # -- lifecycle ------------------------------------------------------------------

    def _destroy(self) -> None:
        """Sync, persist the commit index and close; idempotent (PySyncObj's close)."""
        with self._io:
            if self._closed:
                return
            try:
                if self._failed is None:
                    self.sync()
                    if self._commit != self._commit_saved:
                        self._save_meta()
            finally:
                with self._state:
                    self._closed = True
                self._drop_handle()

    def close(self) -> None:
        """The same as ``_destroy``: sync and close; idempotent."""
        self._destroy()

    def stats(self) -> dict[str, Any]:
        """Counters for metrics; thread-safe."""
        with self._state:
            entries = self._entries
            return {
                "entries": len(entries),
                "first_idx": entries[0][1] if entries else None,
                "last_idx": entries[-1][1] if entries else None,
                "pending": len(self._pending),
                "buffered_bytes": len(self._buffer),
                "bytes": self._size,
                "bytes_written": self._bytes_written,
                "syncs": self._syncs,
                "rewrites": self._rewrites,
                "meta_writes": self._meta_writes,
                "truncations": self._truncations,
                "restored": self._restored,
                "term": self._term,
                "commit_index": self._commit,
                "generation": self._generation,
            }

    # -- internals ------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise Closed(f"the Raft journal in {self._folder} is closed")

    def _fail(self, what: str, exc: OSError) -> StorageFailed:
        self._failed = StorageFailed(
            f"{what} failed ({exc}); the journal takes no more writes: restart the node to "
            "recover from what is durable"
        )
        return self._failed

    def _drop_handle(self) -> None:
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()

    def _guarded_rewrite(self, entries: list[Entry]) -> None:
        try:
            self._rewrite(entries)
        except OSError as exc:
            raise self._fail("rewrite of the Raft journal", exc) from exc
        # The new file holds everything added so far.
        self._buffer = bytearray()
        self._synced_version = self._version

    def _rewrite(self, entries: Iterable[Entry]) -> None:
        """Replace the journal file with ``entries``: temp file, fsync, rename, fsync folder."""
        files = self._files
        tmp = self._path + ".tmp"
        if files.exists(tmp):
            files.remove(tmp)
        generation = self._generation + 1
        out = files.create_exclusive(tmp)
        try:
            chunk = bytearray(encode_file_header(JOURNAL_MAGIC, VERSION, generation))
            for command, idx, term in entries:
                chunk += _entry_frame(command, idx, term)
                if len(chunk) >= _CHUNK:
                    out.write(chunk)
                    chunk = bytearray()
            out.write(chunk)
            out.sync()
            size = out.size
        finally:
            out.close()
        self._drop_handle()
        files.rename(tmp, self._path)
        files.fsync_dir(self._folder)
        self._file = files.open_append(self._path)
        self._generation = generation
        self._size = size
        self._bytes_written += size
        self._rewrites += 1

    def _save_meta(self) -> None:
        try:
            self._write_meta()
        except OSError as exc:
            raise self._fail("write of the Raft meta file", exc) from exc

    def _write_meta(self) -> None:
        """Replace the meta file with the current term, vote and commit index, durably."""
        with self._state:
            commit = self._commit
            meta = {"term": self._term, "voted": self._voted, "commit": commit}
        data = encode_file_header(META_MAGIC, VERSION, 0) + encode_frame(msgpack.packb(meta))
        files = self._files
        tmp = self._meta_path + ".tmp"
        if files.exists(tmp):
            files.remove(tmp)
        out = files.create_exclusive(tmp)
        try:
            out.write(data)
            out.sync()
        finally:
            out.close()
        files.rename(tmp, self._meta_path)
        files.fsync_dir(self._folder)
        with self._state:
            self._commit_saved = commit
            self._meta_writes += 1
