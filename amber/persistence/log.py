"""The ``log`` backend: a write-ahead log plus snapshots in one folder.

On-disk format (version 1)
==========================

Folder layout::

    data/
      FORMAT                  b"amber-log 1\\n", written atomically at creation
      LOCK                    "pid N": flock(LOCK_EX|LOCK_NB) held while open
      wal/{first_seq:020d}.wal         write-ahead log segments
      snapshots/{last_seq:020d}.snap   snapshots (``*.tmp`` while being written)

All integers are little-endian; every checksum is CRC-32C.

**File header** (WAL segments and snapshots, 24 bytes)::

    <8-byte magic><u32 version = 1><u64 seq><u32 crc32c(first 20 bytes)>

magic ``AMBRWAL\\0`` with ``seq`` = first record's seq, or ``AMBRSNP\\0`` with
``seq`` = the snapshot's last_seq; it must match the file name.

**Frame** (12-byte header + body)::

    <u32 length><u32 crc32c(body)><u32 crc32c(first 8 header bytes)> body

with ``length <= 256 MiB`` (see :mod:`amber.persistence.framing`).

**WAL segment**: file header, then one frame per record with body
``<u64 seq> payload``. Seqs increase by one within a segment and across
segments; a segment may be empty. The writer appends whole groups of frames
with one write (group commit), fdatasyncs when asked, and past
``segment_bytes`` rolls: fdatasync the old segment (so only the newest can
ever end torn), create the next one with its header, fdatasync it, fsync
``wal/``. A gap between segments is allowed only when a snapshot covers it
(the log restarted after a snapshot that was ahead of it).

**Snapshot**: file header, then one frame per chunk with body
``0x01 chunk``, then an end frame with body ``0x02 <u64 chunk count>`` and
nothing after it. Written to ``{name}.tmp``, fdatasynced, renamed over
``{name}``, then ``snapshots/`` fsynced. After a snapshot only the newest
``keep_snapshots`` are kept, and WAL segments whose records are all covered
by the oldest kept one are deleted (never the segment being written).

**Torn-tail rule**: at the first bad frame at offset ``p`` of the *newest*
segment, the tail is torn (never acknowledged) iff the file ends inside the
frame header, or the header checks out and the body runs past the end of
the file, or a piece of the frame split at 512-byte-aligned offsets is all
zeros (only the header when the header checksum fails). A torn tail is
truncated at ``p`` (truncate + fsync) and reported in ``notes``. Anything
else, and any bad frame in an older segment or a snapshot, is ``Corrupted``
with the file and offset. A newest segment shorter than its header, or all
zeros, was created but never synced: it is removed with a note.

Recovery order
--------------
1. Refuse a non-empty folder that has no ``FORMAT`` and holds foreign files;
   take ``LOCK`` (``Locked`` if held: nothing changes); check ``FORMAT``
   (a newer version is refused), or write it for a new folder.
2. ``snapshots/``: remove ``*.tmp`` leftovers (noted); read the newest
   snapshot through once to verify every frame (``Corrupted`` names an older
   snapshot if one exists).
3. ``wal/``: verify every segment in order (headers, frames, seqs), repair
   the newest one's torn tail, check that the records after the snapshot
   start at ``last_seq + 1`` and run on without gaps.
4. Hand back the snapshot's chunks and the records after it lazily; appends
   then go to the newest segment.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Literal, TypeVar

from ..config import Config
from ..errors import Closed, Corrupted, InvalidArgument, Locked, StorageFailed
from .base import Backend, Recovered, SnapshotData
from .files import FileLayer, FileLock, LockHeld, OsFiles
from .snapshot import (
    TMP_SUFFIX,
    parse_snapshot_name,
    read_chunks,
    snapshot_name,
    write_snapshot_file,
)
from .wal import WalWriter, read_records, recover_wal

__all__ = ["FORMAT_VERSION", "LogBackend"]

FORMAT_VERSION = 1
_FORMAT = re.compile(rb"amber-log (\d+)\n")
_OURS = {"LOCK", "FORMAT", "FORMAT.tmp", "wal", "snapshots"}
_T = TypeVar("_T")


class LogBackend(Backend):
    """WAL + snapshot files in a folder; see the module doc for the format.

    Thread-safety is the :class:`Backend` contract: one appender, one flusher
    (which may overlap: group commit), one snapshot writer. After any failed
    write or sync the backend raises ``StorageFailed`` for every later write.
    """

    name = "log"

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: Config | None = None,
        files: FileLayer | None = None,
    ) -> None:
        self._root = os.path.abspath(os.fspath(path))
        self._config = config if config is not None else Config()
        self._files = files if files is not None else OsFiles()
        self._wal_dir = os.path.join(self._root, "wal")
        self._snap_dir = os.path.join(self._root, "snapshots")
        self._state: Literal["new", "open", "closed"] = "new"
        self._lock: FileLock | None = None
        self._writer: WalWriter | None = None
        self._failure: BaseException | None = None
        self._snapshots: list[int] = []
        self._snapshot_mutex = threading.Lock()
        self._bytes_base = 0
        self._bytes_mark = 0

    @property
    def folder(self) -> str:
        """The absolute path of the data folder."""
        return self._root

    def __repr__(self) -> str:
        return f"LogBackend({self._root!r}, state={self._state})"

    # -- recovery ------------------------------------------------------------

    def recover(self) -> Recovered:
        """Lock the folder, verify and repair it, hand back snapshot and records lazily."""
        if self._state != "new":
            raise InvalidArgument("recover() is called once, on a new backend")
        self._state = "closed"  # until recovery succeeded
        try:
            recovered = self._recover()
        except OSError as exc:
            self._abort()
            raise StorageFailed(f"could not read data folder {self._root}: {exc}") from exc
        except BaseException:
            self._abort()
            raise
        self._state = "open"
        return recovered

    def _recover(self) -> Recovered:
        files, root = self._files, self._root
        self._check_folder()
        if not files.exists(root):
            files.makedirs(root)
            files.fsync_dir(os.path.dirname(root))
        try:
            self._lock = files.lock(os.path.join(root, "LOCK"), f"pid {os.getpid()}\n")
        except LockHeld as exc:
            raise Locked(
                f"data folder {root} is in use by another process ({exc.owner}); "
                "close it there first"
            ) from None
        self._check_format()
        files.makedirs(self._wal_dir)
        files.makedirs(self._snap_dir)
        files.fsync_dir(root)
        notes: list[str] = []
        newest = self._recover_snapshots(notes)
        after = newest if newest is not None else 0
        wal = recover_wal(files, self._wal_dir, after)
        notes += wal.notes
        wal_next = wal.segments[-1].next_seq if wal.segments else 1
        self._writer = WalWriter(
            files,
            self._wal_dir,
            self._config.segment_bytes,
            wal.segments,
            next_seq=max(wal_next, after + 1),
            floor=after,
        )
        self._bytes_base = wal.bytes_after
        snapshot = None
        if newest is not None:
            path = os.path.join(self._snap_dir, snapshot_name(newest))
            chunks = self._guard(read_chunks(files, path, newest))
            snapshot = SnapshotData(newest, chunks, source=path)
        records = self._guard(read_records(files, wal.segments, after))
        return Recovered(snapshot, records, notes)

    def _check_folder(self) -> None:
        """Refuse to move into a folder that holds something other than Amber data."""
        files, root = self._files, self._root
        if not files.exists(root) or files.exists(os.path.join(root, "FORMAT")):
            return
        try:
            foreign = sorted(set(files.listdir(root)) - _OURS)
        except NotADirectoryError:
            raise InvalidArgument(f"{root} is a file, not a data folder") from None
        if foreign:
            raise InvalidArgument(
                f"{root} is not an Amber data folder (no FORMAT file, but it holds "
                f"{', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}): "
                "pass a new or empty folder"
            )

    def _check_format(self) -> None:
        files, path = self._files, os.path.join(self._root, "FORMAT")
        if files.exists(path):
            match = _FORMAT.fullmatch(files.read_bytes(path))
            if match is None or int(match.group(1)) < 1:
                raise Corrupted("the FORMAT file is not an Amber log format marker", path, 0)
            version = int(match.group(1))
            if version > FORMAT_VERSION:
                raise InvalidArgument(
                    f"data folder {self._root} has log format {version}, newer than the "
                    f"{FORMAT_VERSION} this Amber reads: open it with a newer Amber"
                )
            return
        for folder, suffix in ((self._wal_dir, ".wal"), (self._snap_dir, ".snap")):
            if files.exists(folder) and any(n.endswith(suffix) for n in files.listdir(folder)):
                raise Corrupted("the FORMAT file is missing but the folder holds data", path)
        tmp = path + ".tmp"
        if files.exists(tmp):
            files.remove(tmp)
        out = files.create_exclusive(tmp)
        try:
            out.write(b"amber-log %d\n" % FORMAT_VERSION)
            out.sync()
        finally:
            out.close()
        files.rename(tmp, path)
        files.fsync_dir(self._root)

    def _recover_snapshots(self, notes: list[str]) -> int | None:
        """Remove temp leftovers, verify the newest snapshot; return its last_seq."""
        files, folder = self._files, self._snap_dir
        names = files.listdir(folder)
        leftovers = [n for n in names if n.endswith(TMP_SUFFIX)]
        for name in leftovers:
            files.remove(os.path.join(folder, name))
            notes.append(f"removed unfinished snapshot snapshots/{name}")
        if leftovers:
            files.fsync_dir(folder)
        self._snapshots = sorted(s for n in names if (s := parse_snapshot_name(n)) is not None)
        if not self._snapshots:
            return None
        newest = self._snapshots[-1]
        hint = ""
        if len(self._snapshots) > 1:
            hint = (
                f"; an older snapshot snapshots/{snapshot_name(self._snapshots[-2])} exists: "
                "moving the damaged file out of the folder lets Amber start from it"
            )
        for _ in read_chunks(files, os.path.join(folder, snapshot_name(newest)), newest, hint):
            pass  # verify every frame before anyone builds on it
        return newest

    def _guard(self, items: Iterator[_T]) -> Iterator[_T]:
        try:
            yield from items
        except OSError as exc:
            raise StorageFailed(f"reading data folder {self._root} failed: {exc}") from exc

    # -- writing -------------------------------------------------------------

    def _writable(self) -> WalWriter:
        if self._state == "new":
            raise InvalidArgument("call recover() before writing")
        if self._state == "closed" or self._writer is None:
            raise Closed(f"the log backend for {self._root} is closed")
        if self._failure is not None:
            raise StorageFailed(
                f"an earlier write to {self._root} failed ({self._failure}); "
                "reopen the database to recover from what is durable"
            )
        return self._writer

    def _fail(self, exc: OSError, what: str) -> StorageFailed:
        self._failure = exc
        return StorageFailed(
            f"{what} in {self._root} failed: {exc}; writes are stopped, reopen the "
            "database to recover from what is durable"
        )

    def append(self, seq: int, payload: bytes) -> None:
        """Buffer one record (cheap: no I/O); durable once a ``flush`` covers it."""
        self._writable().append(seq, payload)

    def flush(self, sync: bool) -> int:
        """Write the buffered records with one write; with ``sync`` also fdatasync."""
        writer = self._writable()
        try:
            return writer.flush(sync)
        except OSError as exc:
            raise self._fail(exc, "writing the WAL") from exc

    def write_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        """Write a snapshot atomically, then apply retention to snapshots and WAL."""
        writer = self._writable()
        if last_seq < 0:
            raise InvalidArgument(f"snapshot last_seq must be >= 0, not {last_seq}")
        with self._snapshot_mutex:
            if self._snapshots and last_seq < self._snapshots[-1]:
                newest = self._snapshots[-1]
                raise InvalidArgument(
                    f"snapshot at seq {last_seq} is older than the newest one ({newest})"
                )
            mark = writer.bytes_written
            try:
                write_snapshot_file(self._files, self._snap_dir, last_seq, chunks)
                writer.advance_floor(last_seq)
                self._bytes_base, self._bytes_mark = 0, mark
                kept = sorted({*self._snapshots, last_seq})
                doomed, kept = (
                    kept[: -self._config.keep_snapshots],
                    kept[-self._config.keep_snapshots :],
                )
                self._snapshots = kept
                for seq in doomed:
                    self._files.remove(os.path.join(self._snap_dir, snapshot_name(seq)))
                if doomed:
                    self._files.fsync_dir(self._snap_dir)
                writer.remove_through(kept[0])
            except OSError as exc:
                raise self._fail(exc, "writing a snapshot") from exc

    def log_bytes_since_snapshot(self) -> int:
        """WAL bytes written since the newest snapshot was started (approximate)."""
        writer = self._writer
        if writer is None:
            return 0
        return self._bytes_base + writer.bytes_written - self._bytes_mark

    def snapshot_seqs(self) -> list[int]:
        """The ``last_seq`` of every snapshot kept on disk, oldest first."""
        return list(self._snapshots)

    def close(self) -> None:
        """Flush with sync, close the files, release the lock; idempotent.

        Raises ``StorageFailed`` if that last flush fails (the lock is released anyway).
        """
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        writer = self._writer
        error: StorageFailed | None = None
        try:
            if writer is not None and self._failure is None:
                writer.flush(True)
        except OSError as exc:
            error = self._fail(exc, "the final WAL flush")
            error.__cause__ = exc
        finally:
            if writer is not None:
                with contextlib.suppress(OSError):  # the data is synced or reported lost
                    writer.close()
            self._release()
        if error is not None:
            raise error

    def _abort(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            with contextlib.suppress(OSError):  # already failing: report the first error
                writer.close()
        self._release()

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            with contextlib.suppress(OSError):  # a closed descriptor holds no lock
                lock.release()
