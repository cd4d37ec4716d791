"""The SQL backends' shared core: tables, row framing, recovery, snapshots, vacuum.

:mod:`~amber.persistence.sqlite` and :mod:`~amber.persistence.postgres`
supply a connection, the writer lock and how a transaction is made durable;
everything else is here, so both keep one format and one set of rules.

Tables (format version 1)
=========================

With the table prefix ``P`` (default ``amber_``)::

    P meta             (name TEXT PRIMARY KEY, value TEXT)     format, sync marker
    P log              (seq  PRIMARY KEY, frame BLOB)          one row per record
    P snapshots        (last_seq PRIMARY KEY, snap_id, frame)  one row per whole snapshot
    P snapshot_chunks  (snap_id, idx, frame; PRIMARY KEY (snap_id, idx))

Every ``frame`` is a :mod:`~amber.persistence.framing` frame (12-byte header
with the length and two CRC-32C checksums, then the body), so a damaged row
is found on read and reported with its table and row, never used:

- ``log``: body ``<u64 seq> payload``;
- ``snapshot_chunks``: body ``<u64 snap_id><u64 idx> chunk``, ``idx`` = 0, 1, …;
- ``snapshots``: body ``<u64 last_seq><u64 snap_id><u64 chunk count>``.

``meta`` holds ``format`` = ``amber-sql 1`` (a newer version is refused),
``snapshot`` = the newest snapshot's ``last_seq`` (so that a lost snapshot
row is ``Corrupted``, not an empty database) and ``synced`` (the marker a
durable commit writes when nothing else is pending).

Writing
-------
A flush is **one transaction** holding every record of the group (group
commit), committed durably when asked (the dialect's ``_begin(sync=True)``).
A snapshot's chunks go in under a fresh ``snap_id`` in transactions of about
4 MiB, so writers are not held up for the whole snapshot; it exists only once
the final transaction inserts its ``snapshots`` row, which in the same
transaction replaces an older row for the same ``last_seq``, keeps the newest
``keep_snapshots`` rows (and their chunks) and deletes every log row with
``seq <=`` the oldest kept snapshot's ``last_seq`` (vacuum). Chunks without a
``snapshots`` row are leftovers of an interrupted snapshot: recovery deletes
them and says so in its notes.

Recovery
--------
Take the writer lock (``Locked`` if held: nothing changes), create the
tables if missing, check the format, delete leftover chunks, read the newest
snapshot row, then check that the log rows after it start at
``last_seq + 1`` and run on without gaps. Transactions are atomic, so there
is no torn tail: any bad frame, gap or mismatch is ``Corrupted``. Chunks and
records are read lazily in pages and verified as they are handed back.
"""

from __future__ import annotations

import abc
import re
import struct
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from ..config import Config
from ..errors import Corrupted, InvalidArgument, TooLarge
from .base import Recovered, SnapshotData
from .buffered import BufferedBackend
from .framing import HEADER_SIZE, MAX_BODY, checksum, encode_frame, frame_length

__all__ = ["FORMAT", "SqlBackend", "check_prefix", "open_frame"]

FORMAT = "amber-sql 1"
_FORMAT = re.compile(r"amber-sql (\d+)")
_U64 = struct.Struct("<Q")
_SNAP = struct.Struct("<QQQ")
_CHUNK = struct.Struct("<QQ")
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")
#: Rows read per page at recovery.
PAGE = 1000
#: Snapshot chunk bytes inserted per transaction.
CHUNK_TXN_BYTES = 4 * 1024 * 1024


def check_prefix(prefix: str) -> str:
    """A table prefix, checked so that it can be written into SQL as is."""
    if not _PREFIX.fullmatch(prefix):
        raise InvalidArgument(
            f"table prefix {prefix!r} must be lowercase letters, digits and _ "
            "(not starting with a digit, at most 41 characters)"
        )
    return prefix


def open_frame(frame: bytes | memoryview, what: str, where: str) -> memoryview:
    """The verified body of a row's frame; ``Corrupted`` naming ``what`` otherwise."""
    view = memoryview(frame)
    if len(view) < HEADER_SIZE:
        raise Corrupted(f"{what} is {len(view)} bytes, shorter than a frame header", where)
    length = frame_length(view[:HEADER_SIZE])
    if length is None:
        raise Corrupted(f"{what}: frame header checksum mismatch", where)
    if length > MAX_BODY or HEADER_SIZE + length != len(view):
        raise Corrupted(
            f"{what}: frame says {length} body bytes but the row holds {len(view) - HEADER_SIZE}",
            where,
        )
    body = view[HEADER_SIZE:]
    if checksum(body) != struct.unpack_from("<I", view, 4)[0]:
        raise Corrupted(f"{what}: body checksum mismatch", where)
    return body


class SqlBackend(BufferedBackend):
    """Log and snapshots in four tables; the dialect hooks are abstract."""

    #: How the dialect writes a query parameter.
    param = "?"
    #: Column types for sequence numbers and byte strings.
    int_type = "BIGINT"
    blob_type = "BLOB"

    def __init__(self, where: str, config: Config | None, prefix: str) -> None:
        super().__init__(where, config)
        self.prefix = check_prefix(prefix)
        self._conn: Any = None
        self._conn_lock = threading.Lock()
        self._snap_id = 1
        p = self.prefix
        self._t_meta = f"{p}meta"
        self._t_log = f"{p}log"
        self._t_snaps = f"{p}snapshots"
        self._t_chunks = f"{p}snapshot_chunks"

    # -- dialect hooks -------------------------------------------------------------

    @abc.abstractmethod
    def _connect(self) -> Any:
        """A new connection in autocommit mode (transactions are explicit)."""

    @abc.abstractmethod
    def _lock(self, conn: Any) -> None:
        """Take the writer lock for this connection's lifetime; ``Locked`` if held."""

    @abc.abstractmethod
    def _begin(self, conn: Any, sync: bool) -> None:
        """Start a write transaction whose commit is durable iff ``sync``."""

    def _close_conn(self, conn: Any) -> None:
        conn.close()

    # -- helpers ---------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text.replace("?", self.param)

    def _query(self, text: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(self._sql(text), params)
        rows: list[tuple[Any, ...]] = cur.fetchall()
        return rows

    def _exec(self, text: str, params: tuple[Any, ...] = ()) -> int:
        cur = self._conn.execute(self._sql(text), params)
        count: int = cur.rowcount
        return count

    def _transaction(self, sync: bool) -> _Txn:
        return _Txn(self, sync)

    def _insert_many(self, text: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._sql(text), rows)

    # -- recovery ----------------------------------------------------------------------

    def _open(self) -> tuple[Recovered, int, int | None]:
        self._conn = self._connect()
        self._lock(self._conn)
        notes: list[str] = []
        with self._transaction(sync=True):
            self._create_tables()
            removed = self._exec(
                f"DELETE FROM {self._t_chunks} WHERE snap_id NOT IN "
                f"(SELECT snap_id FROM {self._t_snaps})"
            )
        if removed > 0:
            notes.append(f"removed {removed} chunks of an unfinished snapshot")
        rows = self._query(
            f"SELECT max(snap_id) FROM {self._t_snaps} UNION ALL "
            f"SELECT max(snap_id) FROM {self._t_chunks}"
        )
        self._snap_id = max((r[0] or 0) for r in rows) + 1
        snapshot, after = self._newest_snapshot_row()
        marker = self._query(f"SELECT value FROM {self._t_meta} WHERE name = 'snapshot'")
        if marker and int(marker[0][0]) > after:
            raise Corrupted(
                f"snapshot {marker[0][0]} is missing from table {self._t_snaps} (its row in "
                f"{self._t_meta} says it was written); the log before it was vacuumed",
                self.where,
            )
        (last,) = self._query(f"SELECT coalesce(max(seq), 0) FROM {self._t_log}")[0]
        count, low, high, size = self._query(
            f"SELECT count(*), min(seq), max(seq), coalesce(sum(length(frame)), 0) "
            f"FROM {self._t_log} WHERE seq > ?",
            (after,),
        )[0]
        table = self._t_log
        if count and low != after + 1:
            raise Corrupted(
                f"records {after + 1}..{low - 1} are in neither a snapshot nor table {table}",
                self.where,
            )
        if count and count != high - low + 1:
            raise Corrupted(
                f"table {table} holds {count} rows for seqs {low}..{high}: some are missing",
                self.where,
            )
        self._bytes_total = int(size)
        records = self._records(after, int(high or after))
        return Recovered(snapshot, records, notes), int(last), (after if snapshot else None)

    def _create_tables(self) -> None:
        i, b = self.int_type, self.blob_type
        for ddl in (
            f"CREATE TABLE IF NOT EXISTS {self._t_meta} "
            "(name TEXT PRIMARY KEY, value TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self._t_log} (seq {i} PRIMARY KEY, frame {b} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self._t_snaps} "
            f"(last_seq {i} PRIMARY KEY, snap_id {i} NOT NULL, frame {b} NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self._t_chunks} (snap_id {i} NOT NULL, "
            f"idx {i} NOT NULL, frame {b} NOT NULL, PRIMARY KEY (snap_id, idx))",
        ):
            self._exec(ddl)
        found = self._query(f"SELECT value FROM {self._t_meta} WHERE name = 'format'")
        if found:
            match = _FORMAT.fullmatch(found[0][0])
            if match is None:
                raise Corrupted(
                    f"table {self._t_meta} row 'format' holds {found[0][0]!r}, not an Amber "
                    "format marker",
                    self.where,
                )
            if int(match.group(1)) > 1:
                raise InvalidArgument(
                    f"{self.where} holds Amber SQL format {match.group(1)}, newer than the 1 "
                    "this Amber reads: open it with a newer Amber"
                )
            return
        (rows,) = self._query(f"SELECT count(*) FROM {self._t_log}")[0]
        (snaps,) = self._query(f"SELECT count(*) FROM {self._t_snaps}")[0]
        if rows or snaps:
            raise Corrupted(
                f"table {self._t_meta} has no 'format' row but {self._t_log} or "
                f"{self._t_snaps} holds data",
                self.where,
            )
        self._exec(f"INSERT INTO {self._t_meta} (name, value) VALUES ('format', ?)", (FORMAT,))

    def _newest_snapshot_row(self) -> tuple[SnapshotData | None, int]:
        rows = self._query(
            f"SELECT last_seq, snap_id, frame FROM {self._t_snaps} ORDER BY last_seq DESC LIMIT 1"
        )
        if not rows:
            return None, 0
        last_seq, snap_id, frame = rows[0]
        what = f"snapshot row last_seq={last_seq} in table {self._t_snaps}"
        body = open_frame(frame, what, self.where)
        if len(body) != _SNAP.size:
            raise Corrupted(f"{what}: body is {len(body)} bytes, not {_SNAP.size}", self.where)
        seq, sid, count = _SNAP.unpack(body)
        if seq != last_seq or sid != snap_id:
            raise Corrupted(
                f"{what}: frame says last_seq={seq} snap_id={sid}, the row {last_seq}/{snap_id}",
                self.where,
            )
        source = f"{self.where} table {self._t_snaps} last_seq={last_seq}"
        return SnapshotData(int(last_seq), self._chunks(int(snap_id), int(count)), source), int(
            last_seq
        )

    def _chunks(self, snap_id: int, count: int) -> Iterator[bytes]:
        idx = 0
        while True:
            rows = self._query(
                f"SELECT idx, frame FROM {self._t_chunks} WHERE snap_id = ? AND idx >= ? "
                f"ORDER BY idx LIMIT {PAGE}",
                (snap_id, idx),
            )
            for row_idx, frame in rows:
                what = f"snapshot chunk snap_id={snap_id} idx={row_idx} in table {self._t_chunks}"
                if row_idx != idx:
                    raise Corrupted(f"{what}: chunk {idx} is missing", self.where)
                body = open_frame(frame, what, self.where)
                if _CHUNK.unpack_from(body) != (snap_id, idx):
                    raise Corrupted(f"{what}: frame names another chunk", self.where)
                yield bytes(body[_CHUNK.size :])
                idx += 1
            if len(rows) < PAGE:
                break
        if idx != count:
            raise Corrupted(
                f"snapshot snap_id={snap_id} has {idx} chunks in table {self._t_chunks}, "
                f"its row in {self._t_snaps} says {count}",
                self.where,
            )

    def _records(self, after: int, high: int) -> Iterator[tuple[int, bytes]]:
        seq = after
        while seq < high:
            rows = self._query(
                f"SELECT seq, frame FROM {self._t_log} WHERE seq > ? ORDER BY seq LIMIT {PAGE}",
                (seq,),
            )
            if not rows:
                break
            for row_seq, frame in rows:
                what = f"log record seq={row_seq} in table {self._t_log}"
                if row_seq != seq + 1:
                    raise Corrupted(f"{what}: record {seq + 1} is missing", self.where)
                body = open_frame(frame, what, self.where)
                if len(body) < _U64.size or _U64.unpack_from(body)[0] != row_seq:
                    raise Corrupted(f"{what}: frame holds another seq", self.where)
                yield int(row_seq), bytes(body[_U64.size :])
                seq = int(row_seq)

    # -- writing -------------------------------------------------------------------------

    def _write_group(self, records: list[tuple[int, bytes]], sync: bool) -> int:
        rows = [(seq, encode_frame(_U64.pack(seq) + payload)) for seq, payload in records]
        with self._conn_lock, self._transaction(sync):
            self._insert_many(f"INSERT INTO {self._t_log} (seq, frame) VALUES (?, ?)", rows)
        return sum(len(frame) for _, frame in rows)

    def _sync_group(self) -> None:
        # A durable commit covers every earlier commit (one WAL): write a marker row.
        with self._conn_lock, self._transaction(sync=True):
            self._exec(
                f"INSERT INTO {self._t_meta} (name, value) VALUES ('synced', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(self._next - 1),),
            )

    def _store_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        snap_id, self._snap_id = self._snap_id, self._snap_id + 1
        insert = f"INSERT INTO {self._t_chunks} (snap_id, idx, frame) VALUES (?, ?, ?)"
        batch: list[tuple[Any, ...]] = []
        size = count = 0
        try:
            for chunk in chunks:
                if len(chunk) + _CHUNK.size > MAX_BODY:
                    raise TooLarge(f"snapshot chunk of {len(chunk)} bytes exceeds {MAX_BODY}")
                frame = encode_frame(_CHUNK.pack(snap_id, count) + chunk)
                batch.append((snap_id, count, frame))
                size += len(frame)
                count += 1
                if size >= CHUNK_TXN_BYTES:
                    with self._conn_lock, self._transaction(sync=False):
                        self._insert_many(insert, batch)
                    batch, size = [], 0
        except BaseException:
            if self._failure is None:
                self._drop_chunks(snap_id)
            raise
        frame = encode_frame(_SNAP.pack(last_seq, snap_id, count))
        keep = self._config.keep_snapshots
        with self._conn_lock, self._transaction(sync=True):
            self._insert_many(insert, batch)
            old = self._query(
                f"SELECT snap_id FROM {self._t_snaps} WHERE last_seq = ?", (last_seq,)
            )
            for (sid,) in old:
                self._exec(f"DELETE FROM {self._t_chunks} WHERE snap_id = ?", (sid,))
            self._exec(f"DELETE FROM {self._t_snaps} WHERE last_seq = ?", (last_seq,))
            self._exec(
                f"INSERT INTO {self._t_snaps} (last_seq, snap_id, frame) VALUES (?, ?, ?)",
                (last_seq, snap_id, frame),
            )
            kept = self._query(
                f"SELECT last_seq, snap_id FROM {self._t_snaps} ORDER BY last_seq DESC"
            )
            for seq, sid in kept[keep:]:
                self._exec(f"DELETE FROM {self._t_chunks} WHERE snap_id = ?", (sid,))
                self._exec(f"DELETE FROM {self._t_snaps} WHERE last_seq = ?", (seq,))
            oldest = kept[:keep][-1][0]
            self._exec(f"DELETE FROM {self._t_log} WHERE seq <= ?", (oldest,))
            self._exec(
                f"INSERT INTO {self._t_meta} (name, value) VALUES ('snapshot', ?) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (str(last_seq),),
            )

    def _drop_chunks(self, snap_id: int) -> None:
        """Remove an abandoned snapshot's chunks (else recovery removes them)."""
        try:
            with self._conn_lock, self._transaction(sync=False):
                self._exec(f"DELETE FROM {self._t_chunks} WHERE snap_id = ?", (snap_id,))
        except Exception as exc:
            if self._translate(exc, "") is None:
                raise
            self._failure = exc

    def _release(self, clean: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                self._close_conn(conn)
            except Exception as exc:  # already closing: the lock goes with the connection
                if self._translate(exc, "") is None:
                    raise


class _Txn:
    """``with`` block: a write transaction that commits on success, rolls back on error."""

    def __init__(self, backend: SqlBackend, sync: bool) -> None:
        self._backend = backend
        self._sync = sync

    def __enter__(self) -> None:
        self._backend._begin(self._backend._conn, self._sync)

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        conn = self._backend._conn
        if exc_type is None:
            conn.execute("COMMIT")
            return
        try:
            conn.execute("ROLLBACK")
        except Exception as rollback_error:  # the connection is gone: report the first error
            if self._backend._translate(rollback_error, "") is None:
                raise
