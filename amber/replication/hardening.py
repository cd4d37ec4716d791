"""What Amber changes inside PySyncObj, in one place, and why.

PySyncObj is our Raft engine; a few of its gaps cannot be closed from a
subclass, so they are closed here, once per process, by replacing module
attributes. Each replacement is strictly narrower or more durable than the
original, so other users of PySyncObj in the same process keep working:

- **Restricted unpickling.** PySyncObj pickles every message between nodes
  and every command in its log. ``pickle.loads`` of bytes from the network
  runs arbitrary code; the cluster secret authenticates peers, but a leaked
  secret should not mean remote code execution. Messages and commands only
  ever hold plain containers, bytes and node objects, so the unpickler
  accepts exactly those classes.
- **A journal object instead of a file name.** ``SyncObjConf.journalFile``
  may be a journal instance (Amber's durable one); PySyncObj's own file
  journal writes through mmap and never fsyncs.
- **No leaked snapshot files.** PySyncObj opens the snapshot once per
  follower it sends it to and drops the handle without closing it when the
  transfer ends or is cancelled. Reads of it get an in-memory copy instead.
- **Durable file replacement.** PySyncObj replaces its full-dump file (the
  snapshot a new node is sent, and the one it receives) with a bare
  ``rename``: neither the new file's bytes nor the rename survive a power
  cut for sure, yet the journal is compacted right after. The replacement
  fsyncs the file, renames, and fsyncs the directory.
- **Snapshots written off the Raft thread.** PySyncObj calls the serializer
  on the thread that sends heartbeats; encoding a large store there delays
  them into elections. An Amber node captures the image there (a shallow
  copy) and writes the file on a thread of its own, reporting progress
  through ``serializeChecker``. So PySyncObj's own rename of the serializer's
  temporary file is skipped for a guarded dump, and a leader's snapshot
  received meanwhile is renamed into place under the guard's lock, so the
  background write, which checks the guard's generation under the same
  lock, can never put an older image over it (:class:`DumpGuard`).
"""

from __future__ import annotations

import io
import os
import pickle
import threading
import types
from typing import Any

import pysyncobj.journal as _pso_journal
import pysyncobj.pickle as _pso_pickle
import pysyncobj.serializer as _pso_serializer
import pysyncobj.syncobj as _pso_syncobj
import pysyncobj.tcp_connection as _pso_tcp

from ..persistence.files import sync_fd

__all__ = ["DumpGuard", "guard_dump", "install", "restricted_loads", "unguard_dump"]

#: The only classes a message or command may name. Protocol 2 (PySyncObj's)
#: spells bytes as ``_codecs.encode`` (empty bytes as ``bytes()``) and sets
#: as ``set``, under Python 2's module name ``__builtin__``.
_BUILTINS = ("bytes", "bytearray", "set", "frozenset")
_ALLOWED = frozenset(
    {
        ("_codecs", "encode"),
        ("pysyncobj.node", "Node"),
        ("pysyncobj.node", "TCPNode"),
        *((module, name) for module in ("builtins", "__builtin__") for name in _BUILTINS),
    }
)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def restricted_loads(data: bytes | str) -> Any:
    """``pickle.loads`` that only builds plain data and PySyncObj nodes."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8")
    return _Unpickler(io.BytesIO(raw)).load()


def durable_replace(src: str, dst: str) -> None:
    """Rename ``src`` over ``dst`` so that both the bytes and the rename survive a crash."""
    fd = os.open(src, os.O_RDONLY)
    try:
        sync_fd(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    folder = os.path.dirname(os.path.abspath(dst))
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


_create_journal = _pso_journal.createJournal


def _journal_for(journal_file: Any) -> Any:
    """PySyncObj's ``createJournal``, taking a ready journal object as is."""
    if isinstance(journal_file, _pso_journal.Journal):
        return journal_file
    return _create_journal(journal_file)


class DumpGuard:
    """Orders the renames onto one node's full-dump file (see the module doc).

    ``generation`` counts the snapshots received from a leader; a background
    write started at an older generation must not replace the file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.generation = 0


_guards: dict[str, DumpGuard] = {}


def guard_dump(path: str) -> DumpGuard:
    """Take over the full-dump file at ``path``: its owner writes it in the background."""
    guard = DumpGuard(os.path.abspath(path))
    with _lock:
        _guards[guard.path] = guard
    return guard


def unguard_dump(guard: DumpGuard) -> None:
    with _lock:
        if _guards.get(guard.path) is guard:
            del _guards[guard.path]


def _replace_dump(src: str, dst: str) -> None:
    """PySyncObj's ``atomicReplace``: durable, and ordered for a guarded dump."""
    guard = _guards.get(os.path.abspath(dst))
    if guard is None:
        durable_replace(src, dst)
    elif src == dst + ".tmp":
        pass  # the serializer's own file: a guarded dump is written by its owner
    else:  # a snapshot received from the leader
        with guard.lock:
            guard.generation += 1
            durable_replace(src, dst)


def _open_for_serializer(path: str, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
    """``open`` for PySyncObj's serializer: a snapshot read gets an in-memory copy."""
    if mode == "rb":
        with open(path, "rb") as f:
            return io.BytesIO(f.read())
    return open(path, mode, *args, **kwargs)


_installed = False
_lock = threading.Lock()


def install() -> None:
    """Apply the changes above (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        shim = types.SimpleNamespace(
            loads=restricted_loads,
            dumps=_pso_pickle.dumps,
            to_bytes=_pso_pickle.to_bytes,
            load=_pso_pickle.load,
            dump=_pso_pickle.dump,
        )
        _pso_tcp.pickle = shim
        _pso_syncobj.pickle = shim
        _pso_serializer.atomicReplace = _replace_dump
        _pso_serializer.open = _open_for_serializer
        _pso_syncobj.createJournal = _journal_for
        _installed = True
