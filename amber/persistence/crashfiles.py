"""A file layer that can simulate a power loss, for tests and the chaos harness.

:class:`CrashFiles` writes through to real files at once but remembers what a
real disk would still hold after the power went out:

- per file, the size covered by the last ``sync()`` (or a durable truncate);
- per directory, the entries created, renamed or removed since the last
  ``fsync_dir`` of that directory (with what is needed to undo them).

:meth:`CrashFiles.crash` cuts every file back to its durable size — or, given
an ``rng``, keeps a random prefix of the unsynced bytes and may zero-fill a
tail of it from a 512-byte sector boundary, like a disk that wrote some
sectors and not others — then undoes the un-fsynced directory operations,
releases the locks and closes the handles (the process died). Every later
call raises ``OSError(EIO)``; reopen the folder with a fresh layer.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import threading
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from .files import AppendFile, FileLayer, FileLock, OsFiles, ReadFile
from .framing import SECTOR

__all__ = ["CrashFiles"]


@dataclass(slots=True)
class _DirOp:
    kind: Literal["create", "mkdir", "rename", "remove"]
    directory: str
    path: str
    src: str = ""
    #: The durable content a rename replaced or a remove deleted.
    saved: bytes | None = None


def _dead() -> OSError:
    return OSError(errno.EIO, "the simulated machine lost power; reopen with a fresh file layer")


class CrashFiles(FileLayer):
    """Real files plus a record of what is durable; thread-safe."""

    def __init__(self) -> None:
        self._os = OsFiles()
        self._mutex = threading.RLock()
        self._durable: dict[str, int] = {}
        self._pending: list[_DirOp] = []
        self._handles: set[_CrashAppendFile | _CrashReader | TrackedLock] = set()
        self._is_dead = False

    # -- bookkeeping -----------------------------------------------------

    def _check(self) -> None:
        if self._is_dead:
            raise _dead()

    def durable_size(self, path: str) -> int | None:
        """The size a crash would cut ``path`` back to (None if not tracked)."""
        with self._mutex:
            return self._durable.get(os.path.abspath(path))

    def _durable_content(self, path: str) -> bytes:
        data = self._os.read_bytes(path)
        return data[: self._durable.get(path, len(data))]

    def _record(
        self,
        kind: Literal["create", "mkdir", "rename", "remove"],
        path: str,
        src: str = "",
        saved: bytes | None = None,
    ) -> None:
        self._pending.append(_DirOp(kind, os.path.dirname(path), path, src, saved))

    # -- FileLayer -------------------------------------------------------

    def makedirs(self, path: str) -> None:
        with self._mutex:
            self._check()
            path = os.path.abspath(path)
            missing = []
            probe = path
            while not os.path.isdir(probe):
                missing.append(probe)
                probe = os.path.dirname(probe)
            self._os.makedirs(path)
            for created in reversed(missing):
                self._record("mkdir", created)

    def listdir(self, path: str) -> list[str]:
        with self._mutex:
            self._check()
            return self._os.listdir(path)

    def exists(self, path: str) -> bool:
        with self._mutex:
            self._check()
            return self._os.exists(path)

    def size(self, path: str) -> int:
        with self._mutex:
            self._check()
            return self._os.size(path)

    def read_bytes(self, path: str) -> bytes:
        with self._mutex:
            self._check()
            return self._os.read_bytes(path)

    def open_read(self, path: str) -> ReadFile:
        with self._mutex:
            self._check()
            reader = _CrashReader(self, self._os.open_read(path))
            self._handles.add(reader)
            return reader

    def _open(self, path: str, exclusive: bool) -> AppendFile:
        with self._mutex:
            self._check()
            path = os.path.abspath(path)
            existed = os.path.exists(path)
            inner = self._os.create_exclusive(path) if exclusive else self._os.open_append(path)
            if not existed:
                self._record("create", path)
                self._durable[path] = 0
            else:
                self._durable.setdefault(path, inner.size)
            handle = _CrashAppendFile(self, inner)
            self._handles.add(handle)
            return handle

    def open_append(self, path: str) -> AppendFile:
        return self._open(path, exclusive=False)

    def create_exclusive(self, path: str) -> AppendFile:
        return self._open(path, exclusive=True)

    def rename(self, src: str, dst: str) -> None:
        with self._mutex:
            self._check()
            src, dst = os.path.abspath(src), os.path.abspath(dst)
            saved = self._durable_content(dst) if os.path.exists(dst) else None
            src_durable = self._durable.pop(src, None)
            self._os.rename(src, dst)
            self._durable[dst] = self._os.size(dst) if src_durable is None else src_durable
            self._record("rename", dst, src=src, saved=saved)

    def remove(self, path: str) -> None:
        with self._mutex:
            self._check()
            path = os.path.abspath(path)
            saved = self._durable_content(path)
            self._os.remove(path)
            self._durable.pop(path, None)
            self._record("remove", path, saved=saved)

    def truncate(self, path: str, size: int) -> None:
        with self._mutex:
            self._check()
            self._os.truncate(path, size)
            self._durable[os.path.abspath(path)] = size

    def fsync_dir(self, path: str) -> None:
        with self._mutex:
            self._check()
            self._os.fsync_dir(path)
            directory = os.path.abspath(path)
            self._pending = [op for op in self._pending if op.directory != directory]

    def lock(self, path: str, owner: str) -> FileLock:
        with self._mutex:
            self._check()
            handle = TrackedLock(self, self._os.lock(path, owner))
            self._handles.add(handle)
            return handle

    # -- the power cut ---------------------------------------------------

    def crash(self, rng: random.Random | None = None) -> None:
        """Lose power now: keep only what is durable (see the module doc)."""
        with self._mutex:
            if self._is_dead:
                return
            self._is_dead = True
            for handle in list(self._handles):
                handle.drop()
            self._handles.clear()
            for path, durable in self._durable.items():
                if os.path.exists(path):
                    self._cut(path, durable, rng)
            for op in reversed(self._pending):
                self._undo(op)
            self._pending.clear()

    @staticmethod
    def _cut(path: str, durable: int, rng: random.Random | None) -> None:
        size = os.path.getsize(path)
        if size <= durable:
            return
        end = durable if rng is None else rng.randint(durable, size)
        os.truncate(path, end)
        if rng is not None and end > durable and rng.random() < 0.5:
            start = rng.randint(durable, end)
            start = max(durable, start - start % SECTOR)
            with open(path, "r+b") as f:
                f.seek(start)
                f.write(bytes(end - start))

    def _undo(self, op: _DirOp) -> None:
        if op.kind == "create":
            if os.path.exists(op.path):
                os.remove(op.path)
            self._durable.pop(op.path, None)
        elif op.kind == "mkdir":
            shutil.rmtree(op.path, ignore_errors=True)
        elif op.kind == "rename":
            if os.path.exists(op.path):
                os.replace(op.path, op.src)
                self._durable[op.src] = self._durable.pop(op.path, 0)
            if op.saved is not None:
                self._restore(op.path, op.saved)
        else:  # remove
            assert op.saved is not None
            self._restore(op.path, op.saved)

    def _restore(self, path: str, content: bytes) -> None:
        if os.path.isdir(os.path.dirname(path)):
            with open(path, "wb") as f:
                f.write(content)
            self._durable[path] = len(content)


class _CrashAppendFile(AppendFile):
    def __init__(self, owner: CrashFiles, inner: AppendFile) -> None:
        self._owner = owner
        self._inner = inner
        self.path = inner.path

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._owner._mutex:
            self._owner._check()
            self._inner.write(data)

    def sync(self) -> None:
        with self._owner._mutex:
            self._owner._check()
            self._inner.sync()
            self._owner._durable[self.path] = self._inner.size

    def close(self) -> None:
        with self._owner._mutex:
            self._owner._handles.discard(self)
            self._inner.close()  # after a crash it is closed already: a no-op

    def drop(self) -> None:
        self._inner.close()


class _CrashReader:
    def __init__(self, owner: CrashFiles, inner: ReadFile) -> None:
        self._owner = owner
        self._inner = inner

    def read(self, size: int = -1, /) -> bytes:
        with self._owner._mutex:
            self._owner._check()
            return self._inner.read(size)

    def close(self) -> None:
        with self._owner._mutex:
            self._owner._handles.discard(self)
            self._inner.close()

    def drop(self) -> None:
        self._inner.close()


class _LockOwner(Protocol):
    _mutex: Any
    _handles: set[Any]


class TrackedLock(FileLock):
    """A lock a crash-simulating layer tracks, so that its crash can drop it."""

    def __init__(self, owner: _LockOwner, inner: FileLock) -> None:
        self._owner = owner
        self._inner = inner

    def release(self) -> None:
        with self._owner._mutex:
            self._owner._handles.discard(self)
            self._inner.release()

    def drop(self) -> None:
        self._inner.release()  # the kernel drops a dead process's locks
