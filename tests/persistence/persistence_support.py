"""Helpers shared by the persistence tests (imported by name: the folder is on sys.path).

The ``Harness`` classes back the conformance suite: each opens backends of
one kind on one durable store (a folder, a MemoryStorage) and can simulate a
power loss. New backends (sqlite, postgres, s3) join by adding a harness
class and its name to ``BACKENDS``.
"""

from __future__ import annotations

import contextlib
import pathlib

from amber.config import Config
from amber.errors import AmberError
from amber.persistence import (
    Backend,
    CrashFiles,
    LogBackend,
    MemoryBackend,
    MemoryStorage,
    Recovered,
)

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


BACKENDS: dict[str, type[Harness]] = {"log": LogHarness, "memory": MemoryHarness}


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
