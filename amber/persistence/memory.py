"""The ``memory`` backend: the Backend contract without a disk.

Tests use it where durability is not the point, and it runs the same
conformance suite as the log backend. A :class:`MemoryStorage` plays the
disk: hand the same one to a new :class:`MemoryBackend` to simulate a reopen
(flushed records and snapshots survive, unflushed appends do not).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ..config import Config
from ..errors import Closed, InvalidArgument, Locked, StorageFailed
from .base import Backend, Recovered, SnapshotData

__all__ = ["MemoryBackend", "MemoryStorage"]


class MemoryStorage:
    """The durable state of memory backends; one writer at a time."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._records: list[tuple[int, bytes]] = []
        self._snapshots: list[tuple[int, tuple[bytes, ...]]] = []
        self._writer: MemoryBackend | None = None

    def crash(self) -> None:
        """The writing process died: its lock is gone and it can write no more."""
        with self._mutex:
            self._writer = None

    def records(self) -> list[tuple[int, bytes]]:
        """Every durable record still kept, in order."""
        with self._mutex:
            return list(self._records)

    def snapshot_seqs(self) -> list[int]:
        """The ``last_seq`` of every kept snapshot, oldest first."""
        with self._mutex:
            return [seq for seq, _ in self._snapshots]


class MemoryBackend(Backend):
    """Keeps the log and snapshots in a :class:`MemoryStorage`; thread-safe per the contract."""

    name = "memory"

    def __init__(self, shared: MemoryStorage | None = None, config: Config | None = None) -> None:
        self.storage = shared if shared is not None else MemoryStorage()
        self._config = config if config is not None else Config()
        self._state = "new"
        self._buf_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._buffer: list[tuple[int, bytes]] = []
        self._next = 1
        self._floor = 0
        self._bytes = 0

    def recover(self) -> Recovered:
        """Take the storage's writer lock and hand back its newest snapshot and later records."""
        if self._state != "new":
            raise InvalidArgument("recover() is called once, on a new backend")
        storage = self.storage
        with storage._mutex:
            if storage._writer is not None:
                raise Locked("this memory storage is in use by another backend; close it first")
            storage._writer = self
            snapshot = None
            after = 0
            if storage._snapshots:
                after, chunks = storage._snapshots[-1]
                snapshot = SnapshotData(after, iter(chunks), source="memory")
            records = [(seq, payload) for seq, payload in storage._records if seq > after]
            last = storage._records[-1][0] if storage._records else 0
        self._next = max(last, after) + 1
        self._floor = after
        self._bytes = sum(len(payload) for _, payload in records)
        self._state = "open"
        return Recovered(snapshot, iter(records), [])

    def _writable(self) -> MemoryStorage:
        if self._state == "new":
            raise InvalidArgument("call recover() before writing")
        if self._state == "closed":
            raise Closed("the memory backend is closed")
        if self.storage._writer is not self:
            raise StorageFailed("this backend lost its storage (crashed); reopen it")
        return self.storage

    def append(self, seq: int, payload: bytes) -> None:
        """Buffer one record; it survives a reopen once a ``flush`` covers it."""
        self._writable()
        with self._buf_lock:
            if seq != self._next and (seq < self._next or seq - 1 > self._floor):
                raise InvalidArgument(f"append of seq {seq}, but the next seq is {self._next}")
            self._buffer.append((seq, bytes(payload)))
            self._next = seq + 1

    def flush(self, sync: bool) -> int:
        """Move the buffered records into the storage; ``sync`` makes no difference here."""
        storage = self._writable()
        with self._flush_lock:
            with self._buf_lock:
                batch, self._buffer = self._buffer, []
                last = self._next - 1
            with storage._mutex:
                if storage._writer is not self:
                    raise StorageFailed("this backend lost its storage (crashed); reopen it")
                storage._records.extend(batch)
            self._bytes += sum(len(payload) for _, payload in batch)
            return last

    def write_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        """Store the chunks, keep the newest ``keep_snapshots``, drop records they cover."""
        storage = self._writable()
        if last_seq < 0:
            raise InvalidArgument(f"snapshot last_seq must be >= 0, not {last_seq}")
        with storage._mutex:
            newest = storage._snapshots[-1][0] if storage._snapshots else 0
        if last_seq < newest:
            raise InvalidArgument(
                f"snapshot at seq {last_seq} is older than the newest one ({newest})"
            )
        data = tuple(bytes(chunk) for chunk in chunks)
        keep = self._config.keep_snapshots
        with storage._mutex:
            if storage._writer is not self:
                raise StorageFailed("this backend lost its storage (crashed); reopen it")
            snaps = [s for s in storage._snapshots if s[0] != last_seq] + [(last_seq, data)]
            storage._snapshots = snaps[-keep:]
            oldest = storage._snapshots[0][0]
            storage._records = [r for r in storage._records if r[0] > oldest]
        with self._buf_lock:
            self._floor = max(self._floor, last_seq)
        self._bytes = 0

    def log_bytes_since_snapshot(self) -> int:
        """Payload bytes flushed since the newest snapshot."""
        return self._bytes

    def close(self) -> None:
        """Flush and release the storage; idempotent."""
        if self._state != "open":
            self._state = "closed"
            return
        try:
            if self.storage._writer is self:
                self.flush(True)
        finally:
            self._state = "closed"
            with self.storage._mutex:
                if self.storage._writer is self:
                    self.storage._writer = None
