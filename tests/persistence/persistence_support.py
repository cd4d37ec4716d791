"""Helpers shared by the persistence tests (imported by name: the folder is on sys.path).

The ``Harness`` classes back the conformance suite: each opens backends of
one kind on one durable store (a folder, a MemoryStorage, an SQLite file, a
table prefix in PostgreSQL, a prefix in S3) and can simulate a crash. The
``RemoteHarness`` kinds can also be opened by URL from another process
(``PROCESS_BACKENDS``: SIGKILL, lock and corruption cases).
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import time
import uuid

import services

from amber.config import Config
from amber.errors import AmberError
from amber.persistence import (
    Backend,
    CrashFiles,
    LogBackend,
    MemoryBackend,
    MemoryStorage,
    Recovered,
    open_backend,
)
from amber.persistence.buffered import BufferedBackend

#: Small segments so tests cross segment boundaries.
SMALL = Config(segment_bytes=1024, keep_snapshots=2)


def payload(seq: int) -> bytes:
    """A deterministic payload of varying size for record ``seq``."""
    return f"record {seq};".encode() * (seq % 7 + 1)


def chunks_for(last_seq: int, count: int = 3) -> list[bytes]:
    """Deterministic snapshot chunks for a snapshot at ``last_seq``."""
    return [f"snapshot {last_seq} chunk {i};".encode() * (i + 1) for i in range(count)]


def drain(recovered: Recovered) -> tuple[int | None, list[bytes], list[tuple[int, bytes]]]:
    """Consume a Recovered: (snapshot last_seq or None, its chunks, records)."""
    snap = recovered.snapshot
    chunks = list(snap.chunks) if snap is not None else []
    return (snap.last_seq if snap else None), chunks, list(recovered.records)


class Harness:
    """Opens backends of one kind on one durable store."""

    name = "base"

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.tmp_path = tmp_path
        self.opened: list[Backend] = []

    def make(self, config: Config = SMALL) -> Backend:
        raise NotImplementedError

    def open(self, config: Config = SMALL) -> tuple[Backend, Recovered]:
        """A new backend on the same store, recovered."""
        backend = self.make(config)
        self.opened.append(backend)
        return backend, backend.recover()

    def reopen(
        self, config: Config = SMALL
    ) -> tuple[Backend, tuple[int | None, list[bytes], list[tuple[int, bytes]]]]:
        backend, recovered = self.open(config)
        return backend, drain(recovered)

    def crash(self) -> None:
        """Power loss: the open backend dies; only what was synced survives."""
        raise NotImplementedError

    def close_all(self) -> None:
        for backend in self.opened:
            with contextlib.suppress(AmberError):
                backend.close()


class LogHarness(Harness):
    name = "log"

    def __init__(self, tmp_path: pathlib.Path) -> None:
        super().__init__(tmp_path)
        self.folder = tmp_path / "data"
        self.files = CrashFiles()

    def make(self, config: Config = SMALL) -> Backend:
        return LogBackend(self.folder, config, files=self.files)

    def crash(self) -> None:
        self.files.crash()
        self.files = CrashFiles()


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self, tmp_path: pathlib.Path) -> None:
        super().__init__(tmp_path)
        self.storage = MemoryStorage()

    def make(self, config: Config = SMALL) -> Backend:
        return MemoryBackend(self.storage, config)

    def crash(self) -> None:
        self.storage.crash()


class RemoteHarness(Harness):
    """A backend kind that another process can open too (by its URL)."""

    def target(self) -> str:
        """What ``open_backend`` opens: a URL (or a folder) naming this store."""
        raise NotImplementedError

    def make(self, config: Config = SMALL) -> Backend:
        return open_backend(self.target(), config)

    def crash(self) -> None:
        for backend in self.opened:
            if isinstance(backend, BufferedBackend):
                backend.abandon()
        self.wait_lock_free()

    def wait_lock_free(self) -> None:
        """After a writer died: wait until its lock can be taken (S3: lease expiry)."""

    def damage_record(self, seq: int) -> str:
        """Flip a byte of the stored record ``seq``; returns what the error must name."""
        raise NotImplementedError

    def log_units(self) -> list[int]:
        """First seq of each stored log unit (segment, object, row), ascending."""
        raise NotImplementedError

    def snapshot_seqs(self) -> list[int]:
        """``last_seq`` of each stored snapshot, ascending."""
        raise NotImplementedError


class SqliteHarness(RemoteHarness):
    name = "sqlite"

    def target(self) -> str:
        return f"sqlite:///{self.tmp_path / 'amber.db'}"

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.tmp_path / "amber.db", isolation_level=None)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def damage_record(self, seq: int) -> str:
        ((frame,),) = self._query("SELECT frame FROM amber_log WHERE seq = ?", (seq,))
        assert isinstance(frame, bytes)
        self._query("UPDATE amber_log SET frame = ? WHERE seq = ?", (flipped(frame, 20), seq))
        return f"seq={seq} in table amber_log"

    def log_units(self) -> list[int]:
        return [int(r[0]) for r in self._query("SELECT seq FROM amber_log ORDER BY seq")]  # type: ignore[call-overload]

    def snapshot_seqs(self) -> list[int]:
        rows = self._query("SELECT last_seq FROM amber_snapshots ORDER BY last_seq")
        return [int(r[0]) for r in rows]  # type: ignore[call-overload]


class PostgresHarness(RemoteHarness):
    name = "postgres"

    def __init__(self, tmp_path: pathlib.Path) -> None:
        super().__init__(tmp_path)
        self.url = services.fresh_postgres_url()
        self.prefix = self.url.rsplit("table_prefix=", 1)[1]

    def target(self) -> str:
        return self.url

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(services.postgres_url(), autocommit=True) as conn:
            cur = conn.execute(sql.replace("P_", self.prefix), params)
            return cur.fetchall() if cur.description else []

    def damage_record(self, seq: int) -> str:
        ((frame,),) = self._query("SELECT frame FROM P_log WHERE seq = %s", (seq,))
        assert isinstance(frame, bytes)
        self._query("UPDATE P_log SET frame = %s WHERE seq = %s", (flipped(frame, 20), seq))
        return f"seq={seq} in table {self.prefix}log"

    def log_units(self) -> list[int]:
        return [int(r[0]) for r in self._query("SELECT seq FROM P_log ORDER BY seq")]  # type: ignore[call-overload]

    def snapshot_seqs(self) -> list[int]:
        rows = self._query("SELECT last_seq FROM P_snapshots ORDER BY last_seq")
        return [int(r[0]) for r in rows]  # type: ignore[call-overload]


class S3Harness(RemoteHarness):
    name = "s3"
    lease_seconds = 1.5

    def __init__(self, tmp_path: pathlib.Path) -> None:
        super().__init__(tmp_path)
        self.prefix = f"t-{uuid.uuid4().hex[:16]}"
        self.url = services.s3_url(self.prefix, self.lease_seconds)
        self.client = services.s3_client()

    def target(self) -> str:
        return self.url

    def wait_lock_free(self) -> None:
        time.sleep(self.lease_seconds + 0.2)

    def _keys(self, sub: str) -> list[str]:
        reply = self.client.list_objects_v2(Bucket=services.BUCKET, Prefix=f"{self.prefix}/{sub}")
        return sorted(item["Key"] for item in reply.get("Contents", ()))

    def damage_record(self, seq: int) -> str:
        key = [k for k in self._keys("wal/") if int(k.rsplit("/", 1)[1]) <= seq][-1]
        data = self.client.get_object(Bucket=services.BUCKET, Key=key)["Body"].read()
        first = int(key.rsplit("/", 1)[1])
        offset = 24  # skip the object header, then whole frames up to seq
        for _ in range(first, seq):
            offset += 12 + int.from_bytes(data[offset : offset + 4], "little")
        self.client.put_object(Bucket=services.BUCKET, Key=key, Body=flipped(data, offset + 20))
        return key

    def log_units(self) -> list[int]:
        return [int(k.rsplit("/", 1)[1]) for k in self._keys("wal/")]

    def snapshot_seqs(self) -> list[int]:
        return [int(k.rsplit("/", 1)[1]) for k in self._keys("snapshots/")]


class LogProcessHarness(RemoteHarness):
    """The log backend on real files, for the cross-process cases."""

    name = "log"

    def target(self) -> str:
        return str(self.tmp_path / "data")

    def damage_record(self, seq: int) -> str:
        segments = wal_files(self.tmp_path / "data")
        path = [p for p in segments if int(p.name.split(".")[0]) <= seq][-1]
        data = path.read_bytes()
        offset = 24
        for _ in range(int(path.name.split(".")[0]), seq):
            offset += 12 + int.from_bytes(data[offset : offset + 4], "little")
        flip(path, offset + 20)
        return path.name

    def log_units(self) -> list[int]:
        return [int(p.name.split(".")[0]) for p in wal_files(self.tmp_path / "data")]

    def snapshot_seqs(self) -> list[int]:
        return [int(p.name.split(".")[0]) for p in snap_files(self.tmp_path / "data")]


BACKENDS: dict[str, type[Harness]] = {
    "log": LogHarness,
    "memory": MemoryHarness,
    "sqlite": SqliteHarness,
    "postgres": PostgresHarness,
    "s3": S3Harness,
}
#: The kinds whose stores another process can open: the SIGKILL, lock and corruption cases.
PROCESS_BACKENDS: dict[str, type[RemoteHarness]] = {
    "log": LogProcessHarness,
    "sqlite": SqliteHarness,
    "postgres": PostgresHarness,
    "s3": S3Harness,
}


def flipped(data: bytes, offset: int) -> bytes:
    """``data`` with the byte at ``offset`` inverted."""
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1 :]


def wal_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted((folder / "wal").glob("*.wal"))


def snap_files(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted((folder / "snapshots").glob("*.snap"))


def flip(path: pathlib.Path | str, offset: int) -> None:
    """Invert one byte in place."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def write_log(folder: pathlib.Path, count: int, config: Config = SMALL, per_flush: int = 1) -> None:
    """Leave a closed log folder holding records 1..count."""
    backend = LogBackend(folder, config)
    drain(backend.recover())
    for seq in range(1, count + 1):
        backend.append(seq, payload(seq))
        if seq % per_flush == 0:
            backend.flush(sync=True)
    backend.close()


def read_log(
    folder: pathlib.Path | str, config: Config = SMALL
) -> tuple[int | None, list[bytes], list[tuple[int, bytes]], list[str]]:
    """Recover a log folder, close it again; (snapshot seq, chunks, records, notes)."""
    backend = LogBackend(folder, config)
    try:
        recovered = backend.recover()
        snap, chunks, records = drain(recovered)
    finally:
        backend.close()
    return snap, chunks, records, recovered.notes


def expected(first: int, last: int) -> list[tuple[int, bytes]]:
    return [(seq, payload(seq)) for seq in range(first, last + 1)]
