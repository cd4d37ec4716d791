"""A file layer whose un-synced bytes die with the process: a power cut on every SIGKILL.

A process killed by SIGKILL loses nothing it wrote: the bytes sit in the
OS page cache and reach the disk later. To test what a *machine* crash does
to a real ``amber serve`` process, :class:`VolatileFiles` keeps every
appended byte in this process's memory and writes it to the real file only
on ``sync()``. Kill the process and the files on disk hold exactly what
was synced: the state :meth:`CrashFiles.crash()
<amber.persistence.crashfiles.CrashFiles.crash>` leaves (without its
``rng``), but reached through a real kill.

What each call sees, so the log backend behaves as on a real disk:

- contents are *logical*: ``size``, ``read_bytes`` and ``open_read`` see the
  synced bytes on disk followed by the pending ones in memory, as a reader
  of the page cache would;
- ``sync()`` appends the pending bytes to the real file and fdatasyncs it;
- ``truncate`` cuts the logical content and makes it durable (the backend's
  contract: the cut is synced), pending bytes below the cut included;
- directory operations (``makedirs``, ``create_exclusive``, ``rename``,
  ``remove``) and locks go straight to the OS: a rename moves the pending
  bytes with the file, so a temp file renamed before its sync arrives
  empty after a crash, as on a disk that had not written its data yet;
- ``close()`` without ``sync()`` keeps the pending bytes (still readable):
  the page cache outlives the handle, not the machine.

In one process, :meth:`VolatileFiles.crash` plays the kill: it forgets the
pending bytes, closes the handles and releases the locks; every later call
raises ``OSError(EIO)``, and the folder is reopened with a fresh layer.

This is a test hook (``AMBER_TEST_VOLATILE_FILES=1`` for ``amber serve``,
the ``crash`` nemesis of ``amber chaos``), not a storage mode: it holds up
to a WAL segment in memory. Thread-safe.
"""

from __future__ import annotations

import errno
import io
import os
import threading
from dataclasses import dataclass, field

from .crashfiles import TrackedLock
from .files import AppendFile, FileLayer, FileLock, OsFiles, ReadFile, sync_fd

__all__ = ["ENV", "VolatileFiles"]

#: The environment variable that makes ``amber serve`` use this layer (a test hook).
ENV = "AMBER_TEST_VOLATILE_FILES"


@dataclass(slots=True)
class _Pending:
    """The bytes appended to one file since its last sync (follows the file on rename)."""

    data: bytearray = field(default_factory=bytearray)


class VolatileFiles(FileLayer):
    """The OS file layer with appended bytes held in memory until ``sync``."""

    def __init__(self) -> None:
        self._os = OsFiles()
        self._mutex = threading.RLock()
        self._pending: dict[str, _Pending] = {}
        self._handles: set[_VolatileAppendFile | TrackedLock] = set()
        self._is_dead = False

    def _check(self) -> None:
        if self._is_dead:
            raise OSError(errno.EIO, "the process holding these files crashed; reopen them")

    def crash(self) -> None:
        """Die now: what was not synced is gone (see the module doc)."""
        with self._mutex:
            self._is_dead = True
            self._pending.clear()
            for handle in list(self._handles):
                handle.drop()
            self._handles.clear()

    def _entry(self, path: str) -> _Pending:
        return self._pending.setdefault(os.path.abspath(path), _Pending())

    def pending_bytes(self, path: str) -> int:
        """Bytes of ``path`` that a crash now would lose."""
        with self._mutex:
            entry = self._pending.get(os.path.abspath(path))
            return 0 if entry is None else len(entry.data)

    def makedirs(self, path: str) -> None:
        self._check()
        self._os.makedirs(path)

    def listdir(self, path: str) -> list[str]:
        self._check()
        return self._os.listdir(path)

    def exists(self, path: str) -> bool:
        self._check()
        return self._os.exists(path)

    def size(self, path: str) -> int:
        with self._mutex:
            self._check()
            return self._os.size(path) + self.pending_bytes(path)

    def read_bytes(self, path: str) -> bytes:
        with self._mutex:
            self._check()
            entry = self._pending.get(os.path.abspath(path))
            return self._os.read_bytes(path) + (bytes(entry.data) if entry else b"")

    def open_read(self, path: str) -> ReadFile:
        with self._mutex:
            self._check()
            if not self.pending_bytes(path):
                return self._os.open_read(path)
            return io.BytesIO(self.read_bytes(path))

    def _open(self, path: str, flags: int) -> AppendFile:
        with self._mutex:
            self._check()
            handle = _VolatileAppendFile(self, path, flags)
            self._handles.add(handle)
            return handle

    def open_append(self, path: str) -> AppendFile:
        return self._open(path, os.O_CREAT)

    def create_exclusive(self, path: str) -> AppendFile:
        return self._open(path, os.O_CREAT | os.O_EXCL)

    def rename(self, src: str, dst: str) -> None:
        with self._mutex:
            self._check()
            self._os.rename(src, dst)
            entry = self._pending.pop(os.path.abspath(src), None)
            if entry is None:
                self._pending.pop(os.path.abspath(dst), None)
            else:
                self._pending[os.path.abspath(dst)] = entry

    def remove(self, path: str) -> None:
        with self._mutex:
            self._check()
            self._os.remove(path)
            self._pending.pop(os.path.abspath(path), None)

    def truncate(self, path: str, size: int) -> None:
        with self._mutex:
            self._check()
            entry = self._pending.pop(os.path.abspath(path), None)
            on_disk = self._os.size(path)
            keep = bytes(entry.data[: max(0, size - on_disk)]) if entry else b""
            fd = os.open(path, os.O_WRONLY)
            try:
                os.ftruncate(fd, min(size, on_disk))
                if keep:
                    os.pwrite(fd, keep, min(size, on_disk))
                os.fsync(fd)
            finally:
                os.close(fd)
            if entry is not None:
                entry.data.clear()  # an open handle shares it: nothing of it is pending now
                self._pending[os.path.abspath(path)] = entry

    def fsync_dir(self, path: str) -> None:
        self._check()
        self._os.fsync_dir(path)

    def lock(self, path: str, owner: str) -> FileLock:
        with self._mutex:
            self._check()
            handle = TrackedLock(self, self._os.lock(path, owner))
            self._handles.add(handle)
            return handle


class _VolatileAppendFile(AppendFile):
    def __init__(self, owner: VolatileFiles, path: str, flags: int) -> None:
        self._owner = owner
        self.path = path
        self._fd: int | None = os.open(path, flags | os.O_WRONLY | os.O_APPEND, 0o644)
        # Opening with O_CREAT (not O_EXCL) keeps whatever is pending for an existing file.
        if flags & os.O_EXCL:
            owner._pending.pop(os.path.abspath(path), None)
        self._entry = owner._entry(path)

    def _handle(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        return self._fd

    @property
    def size(self) -> int:
        with self._owner._mutex:
            return os.fstat(self._handle()).st_size + len(self._entry.data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._owner._mutex:
            self._owner._check()
            self._handle()
            self._entry.data += data

    def sync(self) -> None:
        with self._owner._mutex:
            self._owner._check()
            fd = self._handle()
            pending = bytes(self._entry.data)
            written = 0
            try:
                while written < len(pending):
                    written += os.write(fd, pending[written:])
            finally:
                del self._entry.data[:written]
            sync_fd(fd)

    def close(self) -> None:
        with self._owner._mutex:
            self._owner._handles.discard(self)
            self.drop()

    def drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
