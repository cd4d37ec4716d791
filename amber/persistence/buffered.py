"""What the remote backends (sqlite, postgres, s3) share: buffering, seq checks, lifecycle.

A :class:`BufferedBackend` keeps the :class:`~amber.persistence.base.Backend`
threading contract once, so each remote backend only says how a *group* of
records, a snapshot and the writer lock reach its store:

- ``append`` buffers ``(seq, payload)`` under a small lock (no I/O) and
  checks the order: the next seq, or — after a snapshot that is ahead of the
  log — the seq right after that snapshot;
- ``flush(sync)`` takes the whole buffer and hands it to ``_write_group`` in
  one call: one transaction (SQL) or one object (S3) per group commit. With
  ``sync`` and an empty buffer it still calls ``_sync_group`` when earlier
  groups were written without ``sync``, so ``interval`` mode's periodic sync
  makes them durable;
- ``write_snapshot`` runs ``_store_snapshot`` under its own lock, concurrently
  with appends and flushes, and moves the floor (the seq a snapshot covers);
- any driver error during a write stops all later writes with
  ``StorageFailed``: like an fsync error, a lost commit or PUT answer leaves
  unknown what is durable, and only a reopen (recovery) can say;
- ``abandon`` drops everything without writing, as if the process died —
  what the tests use to simulate a crash in-process.
"""

from __future__ import annotations

import abc
import contextlib
import threading
from collections.abc import Iterable
from typing import Literal

from ..config import Config
from ..errors import AmberError, Closed, InvalidArgument, StorageFailed
from .base import Backend, Recovered

__all__ = ["BufferedBackend"]


class BufferedBackend(Backend):
    """A backend that writes whole groups; subclasses implement the ``_`` hooks."""

    def __init__(self, where: str, config: Config | None = None) -> None:
        #: Where the data lives, for messages (a URL without secrets).
        self.where = where
        self._config = config if config is not None else Config()
        self._state: Literal["new", "open", "closed"] = "new"
        self._failure: BaseException | None = None
        self._buf_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._snapshot_lock = threading.Lock()
        self._buffer: list[tuple[int, bytes]] = []
        self._next = 1
        self._floor = 0
        self._newest_snapshot: int | None = None
        self._unsynced = False
        self._bytes_total = 0
        self._bytes_mark = 0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r}, state={self._state})"

    # -- hooks ------------------------------------------------------------------

    @abc.abstractmethod
    def _open(self) -> tuple[Recovered, int, int | None]:
        """Take the writer lock, create what is missing, read the durable state.

        Returns the recovered state, the last seq in the log (0 when empty),
        and the newest snapshot's ``last_seq`` (None without one).
        """

    @abc.abstractmethod
    def _write_group(self, records: list[tuple[int, bytes]], sync: bool) -> int:
        """Make ``records`` durable as one unit; returns the bytes stored."""

    @abc.abstractmethod
    def _sync_group(self) -> None:
        """Make every group written without ``sync`` durable."""

    @abc.abstractmethod
    def _store_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        """Store a snapshot atomically, then keep ``keep_snapshots`` and vacuum the log."""

    @abc.abstractmethod
    def _release(self, clean: bool) -> None:
        """Release the writer lock and the connections; never raises.

        ``clean=False`` is a crash (``abandon``): drop, don't tidy up.
        """

    def _translate(self, exc: Exception, what: str) -> AmberError | None:
        """The Amber error for a driver error, or None if ``exc`` is not one."""
        return None

    # -- the contract -----------------------------------------------------------

    def recover(self) -> Recovered:
        """Take the writer lock and hand back the newest snapshot and the records after it."""
        if self._state != "new":
            raise InvalidArgument("recover() is called once, on a new backend")
        self._state = "closed"  # until recovery succeeded
        try:
            recovered, last, newest = self._open()
        except AmberError:
            self._release(clean=True)
            raise
        except Exception as exc:
            self._release(clean=True)
            error = self._translate(exc, "opening")
            if error is None:
                raise
            raise error from exc
        after = newest if newest is not None else 0
        self._newest_snapshot = newest
        self._floor = after
        self._next = max(last, after) + 1
        self._state = "open"
        return recovered

    def _writable(self) -> None:
        if self._state == "new":
            raise InvalidArgument("call recover() before writing")
        if self._state == "closed":
            raise Closed(f"the {self.name} backend for {self.where} is closed")
        if self._failure is not None:
            raise StorageFailed(
                f"an earlier write to {self.where} failed ({self._failure}); "
                "reopen the database to recover from what is durable"
            )

    def _fail(self, exc: Exception, what: str) -> AmberError:
        self._failure = exc
        error = self._translate(exc, what)
        if isinstance(error, StorageFailed | None):
            return StorageFailed(
                f"{what} {self.where} failed: {exc}; writes are stopped, reopen the "
                "database to recover from what is durable"
            )
        return error

    def append(self, seq: int, payload: bytes) -> None:
        """Buffer one record (no I/O); durable once a ``flush`` covers it."""
        self._writable()
        with self._buf_lock:
            if seq != self._next and (seq < self._next or seq - 1 > self._floor):
                raise InvalidArgument(f"append of seq {seq}, but the next seq is {self._next}")
            self._buffer.append((seq, bytes(payload)))
            self._next = seq + 1

    def flush(self, sync: bool) -> int:
        """Write every buffered record as one group; with ``sync`` it is durable on return."""
        self._writable()
        with self._flush_lock:
            self._writable()
            with self._buf_lock:
                group, self._buffer = self._buffer, []
                last = self._next - 1
            try:
                if group:
                    self._bytes_total += self._write_group(group, sync)
                    self._unsynced = not sync
                elif sync and self._unsynced:
                    self._sync_group()
                    self._unsynced = False
            except Exception as exc:
                raise self._fail(exc, "writing the log to") from exc
            return last

    def write_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        """Store a snapshot atomically, keep the newest ``keep_snapshots``, vacuum the log."""
        self._writable()
        if last_seq < 0:
            raise InvalidArgument(f"snapshot last_seq must be >= 0, not {last_seq}")
        with self._snapshot_lock:
            newest = self._newest_snapshot
            if newest is not None and last_seq < newest:
                raise InvalidArgument(
                    f"snapshot at seq {last_seq} is older than the newest one ({newest})"
                )
            mark = self._bytes_total
            try:
                self._store_snapshot(last_seq, chunks)
            except AmberError:
                raise
            except Exception as exc:
                error = self._translate(exc, "writing a snapshot to")
                if error is None:
                    raise  # the chunk source failed: nothing was stored, carry on
                raise self._fail(exc, "writing a snapshot to") from exc
            self._newest_snapshot = last_seq
            self._bytes_mark = mark
            with self._buf_lock:
                self._floor = max(self._floor, last_seq)

    def log_bytes_since_snapshot(self) -> int:
        """Log bytes stored since the newest snapshot was started."""
        return self._bytes_total - self._bytes_mark

    def close(self) -> None:
        """Flush with sync and release the writer lock; idempotent.

        Raises ``StorageFailed`` if that last flush fails (the lock is released anyway).
        """
        if self._state != "open":
            self._state = "closed"
            return
        try:
            if self._failure is None:
                self.flush(True)
        finally:
            self._state = "closed"
            self._release(clean=True)

    def abandon(self) -> None:
        """Drop buffered records, connections and the lock without writing (a crash)."""
        with self._buf_lock:
            self._buffer = []
        self._state = "closed"
        with contextlib.suppress(Exception):
            self._release(clean=False)
