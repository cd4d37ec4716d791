"""The file layer under the log backend, injectable so tests can cut the power.

The backend touches the disk only through a :class:`FileLayer`. :class:`OsFiles`
is the real one; :class:`~amber.persistence.crashfiles.CrashFiles` also tracks
what is durable and can simulate a power loss. Every method raises ``OSError``
on failure; the backend turns that into ``StorageFailed``.
"""

from __future__ import annotations

import abc
import errno
import fcntl
import os
import sys
from typing import BinaryIO, Protocol

__all__ = ["AppendFile", "FileLayer", "FileLock", "LockHeld", "OsFiles", "ReadFile", "sync_fd"]


class ReadFile(Protocol):
    """A streaming binary reader (a file object is one)."""

    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


class AppendFile(abc.ABC):
    """A file opened for appending; ``write`` writes all of ``data`` or raises."""

    path: str

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes in the file, including what was appended but not yet synced."""

    @abc.abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append all of ``data`` (reaches the OS, not yet stable storage)."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make the content stable (fdatasync; F_FULLFSYNC on macOS)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the handle; idempotent."""


class FileLock(abc.ABC):
    """An exclusive advisory lock held on a lock file until released."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give the lock up; idempotent."""


class LockHeld(OSError):
    """Another holder has the lock; ``owner`` is what it wrote into the lock file."""

    def __init__(self, path: str, owner: str) -> None:
        super().__init__(errno.EWOULDBLOCK, f"{path} is locked by {owner or 'unknown'}")
        self.owner = owner


class FileLayer(abc.ABC):
    """What the log backend needs from a filesystem; paths are plain strings."""

    @abc.abstractmethod
    def makedirs(self, path: str) -> None:
        """Create a directory and its parents; fine if it exists."""

    @abc.abstractmethod
    def listdir(self, path: str) -> list[str]:
        """Names in a directory, sorted."""

    @abc.abstractmethod
    def exists(self, path: str) -> bool: ...

    @abc.abstractmethod
    def size(self, path: str) -> int: ...

    @abc.abstractmethod
    def read_bytes(self, path: str) -> bytes: ...

    @abc.abstractmethod
    def open_read(self, path: str) -> ReadFile:
        """A streaming reader, for files too big to read at once."""

    @abc.abstractmethod
    def open_append(self, path: str) -> AppendFile:
        """Open for appending, creating the file if absent."""

    @abc.abstractmethod
    def create_exclusive(self, path: str) -> AppendFile:
        """Create a new, empty file; ``FileExistsError`` if it exists."""

    @abc.abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Atomically replace ``dst`` with ``src`` (same directory)."""

    @abc.abstractmethod
    def remove(self, path: str) -> None: ...

    @abc.abstractmethod
    def truncate(self, path: str, size: int) -> None:
        """Cut a file to ``size`` bytes and sync it: the cut is durable on return."""

    @abc.abstractmethod
    def fsync_dir(self, path: str) -> None:
        """Make the directory's entries (creates, renames, removes) durable."""

    @abc.abstractmethod
    def lock(self, path: str, owner: str) -> FileLock:
        """Take an exclusive lock on ``path`` (created if absent) and write ``owner`` into it.

        Raises :class:`LockHeld` with the current owner's text when it is taken.
        """


def sync_fd(fd: int) -> None:
    """Flush a file's data to stable storage: the strongest cheap call per platform."""
    if sys.platform == "darwin":  # fsync on macOS stops at the drive's cache
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)
    elif hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:  # pragma: no cover - platforms without fdatasync
        os.fsync(fd)


class _OsAppendFile(AppendFile):
    def __init__(self, path: str, flags: int) -> None:
        self.path = path
        self._fd: int | None = os.open(path, flags | os.O_WRONLY | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size

    @property
    def size(self) -> int:
        return self._size

    def _handle(self) -> int:
        if self._fd is None:
            raise OSError(errno.EBADF, f"{self.path} is closed")
        return self._fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        fd = self._handle()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            self._size += written
            view = view[written:]

    def sync(self) -> None:
        sync_fd(self._handle())

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _OsFileLock(FileLock):
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the flock


class OsFiles(FileLayer):
    """The real filesystem, through ``os``."""

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def listdir(self, path: str) -> list[str]:
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def size(self, path: str) -> int:
        return os.stat(path).st_size

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def open_read(self, path: str) -> BinaryIO:
        return open(path, "rb")  # the caller closes it

    def open_append(self, path: str) -> AppendFile:
        return _OsAppendFile(path, os.O_CREAT)

    def create_exclusive(self, path: str) -> AppendFile:
        return _OsAppendFile(path, os.O_CREAT | os.O_EXCL)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def truncate(self, path: str, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)  # the size is metadata: fdatasync may skip it
        finally:
            os.close(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def lock(self, path: str, owner: str) -> FileLock:
        # O_RDWR without O_TRUNC: a refused locker must not wipe the holder's pid.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                held_by = os.pread(fd, 256, 0).decode("utf-8", "replace").strip()
            finally:
                os.close(fd)
            raise LockHeld(path, held_by) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        return _OsFileLock(fd)
