"""MemoryBackend specifics beyond the conformance suite."""

from __future__ import annotations

import pytest
from persistence_support import chunks_for, drain

from amber.config import Config
from amber.errors import Locked, StorageFailed
from amber.persistence import MemoryBackend, MemoryStorage


def test_a_new_backend_on_the_same_storage_is_a_reopen() -> None:
    storage = MemoryStorage()
    backend = MemoryBackend(storage)
    drain(backend.recover())
    backend.append(1, b"a")
    backend.flush(sync=False)
    backend.append(2, b"unflushed")
    storage.crash()
    with pytest.raises(StorageFailed):
        backend.flush(sync=True)
    backend.close()  # a dead backend closes quietly
    again = MemoryBackend(storage)
    assert drain(again.recover()) == (None, [], [(1, b"a")])
    again.close()


def test_one_writer_per_storage() -> None:
    storage = MemoryStorage()
    first = MemoryBackend(storage)
    first.recover()
    with pytest.raises(Locked):
        MemoryBackend(storage).recover()
    MemoryBackend().recover()  # another storage is independent
    first.close()
    MemoryBackend(storage).recover()


def test_retention_drops_old_snapshots_and_covered_records() -> None:
    storage = MemoryStorage()
    backend = MemoryBackend(storage, Config(keep_snapshots=2))
    backend.recover()
    for seq in range(1, 31):
        backend.append(seq, b"x")
        backend.flush(sync=True)
        if seq % 10 == 0:
            backend.write_snapshot(seq, chunks_for(seq))
    assert storage.snapshot_seqs() == [20, 30]
    assert [seq for seq, _ in storage.records()] == list(range(21, 31))
    backend.close()
