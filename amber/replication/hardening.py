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
- **Bounded, linear frame reading.** PySyncObj reads everything a socket
  holds into ``bytes`` grown with ``+=`` (quadratic) and only then looks at
  the frame's length header, trusting it — before anything is authenticated.
  A header of 2 GB plus junk made a leader buffer it all, hold the Raft
  thread into elections and grow by the junk's size. The replacement
  connection (:class:`Connection`) reads into a ``bytearray``, checks each
  header as soon as its 4 bytes arrive and closes the connection when it
  announces more than its :class:`FrameLimits` allow (a tiny limit until the
  peer has sent one frame that decrypts, then the largest legitimate
  message), or when an encrypted frame cannot be a Fernet token (its first
  byte). Without limits (PySyncObj used outside Amber) it reads as before,
  only linearly.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import socket
import struct
import threading
import types
import zlib
from dataclasses import dataclass
from typing import Any

import pysyncobj.journal as _pso_journal
import pysyncobj.pickle as _pso_pickle
import pysyncobj.serializer as _pso_serializer
import pysyncobj.syncobj as _pso_syncobj
import pysyncobj.tcp_connection as _pso_tcp
import pysyncobj.tcp_server as _pso_tcp_server
import pysyncobj.transport as _pso_transport

from ..persistence.files import sync_fd

__all__ = [
    "Connection",
    "DumpGuard",
    "FrameLimits",
    "guard_dump",
    "install",
    "restricted_loads",
    "unguard_dump",
]

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


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """The largest frame (bytes after the 4-byte header) a connection accepts.

    ``unauthenticated`` holds until the peer has sent one frame that decodes
    (decrypts with the cluster secret, when there is one): PySyncObj's first
    frame is a 32-byte key or a node address. ``authenticated`` is the
    largest legitimate message.
    """

    unauthenticated: int
    authenticated: int


#: Fernet tokens are base64url of a version byte 0x80, so they start with "g".
_FERNET_FIRST = ord("g")
#: Once the frame at the head is complete, read ahead at most this much before parsing.
_READ_AHEAD = 1 << 20
_HEADER = struct.Struct("i")  # PySyncObj's: native signed int


class Connection(_pso_tcp.TcpConnection):  # type: ignore[misc]
    """PySyncObj's TCP connection, reading linearly and within :class:`FrameLimits`.

    The methods below replace ``TcpConnection``'s private ones (hence the
    mangled names); everything else is PySyncObj's.
    """

    #: Set by Amber's transport; ``None``: no limits (PySyncObj's behaviour).
    frame_limits: FrameLimits | None = None
    #: A frame from the peer decoded (decrypted) since the connection opened.
    authenticated = False
    #: Why the connection was last refused, for the log and tests.
    refused: str | None = None
    # PySyncObj's own attributes that the methods below assign.
    _TcpConnection__readBuffer: bytes | bytearray
    recvLastTimestamp: int

    def disconnect(self) -> None:
        self.authenticated = False
        super().disconnect()

    def connect(self, host: str, port: int) -> bool:
        self.authenticated = False
        self.refused = None
        return bool(super().connect(host, port))

    def _head(self, buffer: bytearray) -> int | None:
        """The head frame's length in ``buffer`` (-1: header incomplete); None: refuse it."""
        if len(buffer) < _HEADER.size:
            return -1
        (length,) = _HEADER.unpack_from(buffer)
        limits = self.frame_limits
        if limits is None:
            return int(length) if length >= 0 else None
        limit = limits.authenticated if self.authenticated else limits.unauthenticated
        if not 0 < length <= limit:
            self.refused = f"a frame header announces {length} bytes (limit {limit})"
            return None
        if self.encryptor and len(buffer) > _HEADER.size and buffer[_HEADER.size] != _FERNET_FIRST:
            self.refused = "a frame that is not a Fernet token"
            return None
        return int(length)

    def _TcpConnection__processRead(self) -> bool:
        sock = self._TcpConnection__socket
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if not incoming or sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return False
        buffer = self._TcpConnection__readBuffer
        if not isinstance(buffer, bytearray):
            buffer = self._TcpConnection__readBuffer = bytearray(buffer)
        buffer += incoming
        length = self._head(buffer)
        if length is None:
            self.disconnect()
            return False
        if self.frame_limits is None or length < 0 or len(buffer) < _HEADER.size + length:
            return True
        # The head frame is complete: parse before reading much more, so the
        # frames behind it are checked before they pile up.
        ahead = _READ_AHEAD if self.authenticated else self.frame_limits.unauthenticated
        return len(buffer) < ahead

    def _TcpConnection__processParseMessage(self) -> Any:
        buffer = self._TcpConnection__readBuffer
        if not isinstance(buffer, bytearray):
            return None  # nothing read since the connection (re)opened
        length = self._head(buffer)
        if length is None:
            self.disconnect()
            return None
        if length < 0 or len(buffer) - _HEADER.size < length:
            return None
        with memoryview(buffer) as view:
            data = bytes(view[_HEADER.size : _HEADER.size + length])
        try:
            if self.encryptor:
                stamp = self.encryptor.extract_timestamp(data)
                if stamp < self.recvLastTimestamp:
                    raise ValueError("a frame older than the previous one")
                self.recvLastTimestamp = stamp
                data = self.encryptor.decrypt(data)
            message = _pso_tcp.pickle.loads(zlib.decompress(data))
            if self.recvRandKey:
                key, message = message
                if key != self.recvRandKey:
                    raise ValueError("a frame with another connection's key")
        except Exception as exc:
            self.refused = f"a frame that does not decode ({type(exc).__name__})"
            self.disconnect()
            return None
        del buffer[: _HEADER.size + length]
        self.authenticated = True
        return message


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
        _pso_tcp_server.TcpConnection = Connection
        _pso_transport.TcpConnection = Connection
        _installed = True
