"""The log backend as a whole: the folder, the lock, retention, failures, open_backend."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
from persistence_support import (
    SMALL,
    chunks_for,
    drain,
    expected,
    payload,
    read_log,
    snap_files,
    wal_files,
    write_log,
)

import amber
from amber.config import Config
from amber.errors import Closed, Corrupted, InvalidArgument, Locked, StorageFailed
from amber.persistence import CrashFiles, LogBackend, MemoryBackend, open_backend


def listing(folder: pathlib.Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_new_folder_layout(folder: pathlib.Path) -> None:
    write_log(folder, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["FORMAT", "LOCK", "snapshots", "wal"]
    assert (folder / "FORMAT").read_bytes() == b"amber-log 1\n"
    assert (folder / "LOCK").read_bytes() == f"pid {os.getpid()}\n".encode()


def test_second_backend_in_process_is_locked_and_changes_nothing(folder: pathlib.Path) -> None:
    first = LogBackend(folder, SMALL)
    first.recover()
    first.append(1, b"a")
    first.flush(sync=True)
    before = listing(folder)
    with pytest.raises(Locked, match=f"in use by another process \\(pid {os.getpid()}\\)"):
        LogBackend(folder, SMALL).recover()
    assert listing(folder) == before
    first.close()
    assert read_log(folder)[2] == [(1, b"a")]


def test_backend_in_another_process_locks_us_out(folder: pathlib.Path) -> None:
    root = os.path.dirname(os.path.dirname(amber.__file__))
    script = textwrap.dedent(
        f"""
        import sys
        from amber.persistence import LogBackend
        backend = LogBackend({str(folder)!r})
        backend.recover()
        print("ready", flush=True)
        sys.stdin.readline()
        backend.close()
        """
    )
    env = {**os.environ, "PYTHONPATH": root}
    with subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    ) as child:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(Locked, match=f"pid {child.pid}"):
            LogBackend(folder).recover()
        child.stdin.write("\n")
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    backend = LogBackend(folder)
    backend.recover()
    backend.close()


def test_recover_twice_and_use_after_close(folder: pathlib.Path) -> None:
    backend = LogBackend(folder)
    backend.recover()
    with pytest.raises(InvalidArgument):
        backend.recover()
    backend.close()
    with pytest.raises(Closed):
        backend.write_snapshot(0, [])


def test_newer_format_is_refused(folder: pathlib.Path) -> None:
    write_log(folder, 3)
    (folder / "FORMAT").write_bytes(b"amber-log 2\n")
    with pytest.raises(InvalidArgument, match="newer"):
        read_log(folder)
    # the lock was released: the folder can be opened again once fixed
    (folder / "FORMAT").write_bytes(b"amber-log 1\n")
    assert len(read_log(folder)[2]) == 3


def test_garbled_or_missing_format_is_corruption(folder: pathlib.Path) -> None:
    write_log(folder, 3)
    (folder / "FORMAT").write_bytes(b"hello")
    with pytest.raises(Corrupted, match="FORMAT"):
        read_log(folder)
    (folder / "FORMAT").unlink()
    with pytest.raises(Corrupted, match="FORMAT file is missing"):
        read_log(folder)


def test_foreign_folder_and_file_are_refused(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not an Amber data folder"):
        LogBackend(tmp_path).recover()
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(InvalidArgument, match="is a file"):
        LogBackend(tmp_path / "notes.txt").recover()


def test_interrupted_creation_is_finished_on_next_open(folder: pathlib.Path) -> None:
    files = CrashFiles()
    backend = LogBackend(folder, SMALL, files=files)
    drain(backend.recover())
    files.crash()  # dirs made durable, but nothing written yet
    assert read_log(folder)[:3] == (None, [], [])


def test_retention_keeps_snapshots_and_the_wal_back_to_the_oldest(folder: pathlib.Path) -> None:
    config = Config(segment_bytes=1024, keep_snapshots=2)
    backend = LogBackend(folder, config)
    backend.recover()
    for seq in range(1, 301):
        backend.append(seq, payload(seq))
        backend.flush(sync=True)
        if seq in (100, 200, 250):
            backend.write_snapshot(seq, chunks_for(seq))
    assert backend.snapshot_seqs() == [200, 250]
    backend.close()
    assert [int(p.stem) for p in snap_files(folder)] == [200, 250]
    firsts = [int(p.stem) for p in wal_files(folder)]
    assert firsts[0] <= 201 < firsts[1]  # everything after the oldest kept snapshot is kept
    assert read_log(folder)[:3] == (250, chunks_for(250), expected(251, 300))
    # Without the newest snapshot, recovery starts from the older one and the WAL reaches it.
    snap_files(folder)[-1].unlink()
    assert read_log(folder)[:3] == (200, chunks_for(200), expected(201, 300))


def test_the_segment_being_written_is_never_deleted(folder: pathlib.Path) -> None:
    backend = LogBackend(folder, Config(segment_bytes=1 << 20, keep_snapshots=1))
    backend.recover()
    for seq in range(1, 11):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    backend.write_snapshot(10, chunks_for(10))
    backend.close()
    assert len(wal_files(folder)) == 1
    assert read_log(folder)[:3] == (10, chunks_for(10), [])


def test_write_failure_stops_writes_and_close_still_unlocks(folder: pathlib.Path) -> None:
    files = CrashFiles()
    backend = LogBackend(folder, SMALL, files=files)
    backend.recover()
    backend.append(1, b"a")
    backend.flush(sync=True)
    backend.append(2, b"b")
    files.crash()
    with pytest.raises(StorageFailed, match="reopen") as info:
        backend.flush(sync=True)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(StorageFailed):
        backend.append(3, b"c")
    with pytest.raises(StorageFailed):
        backend.write_snapshot(1, [])
    backend.close()
    backend.close()
    assert read_log(folder)[2] == [(1, b"a")]


def test_failed_final_flush_raises_from_close(folder: pathlib.Path) -> None:
    files = CrashFiles()
    backend = LogBackend(folder, SMALL, files=files)
    backend.recover()
    backend.append(1, b"a")
    files.crash()
    with pytest.raises(StorageFailed):
        backend.close()
    backend.close()


def test_corruption_releases_the_lock(folder: pathlib.Path) -> None:
    write_log(folder, 3)
    (folder / "FORMAT").write_bytes(b"bad")
    for _ in range(2):  # Corrupted both times, never Locked
        with pytest.raises(Corrupted):
            LogBackend(folder).recover()


def test_log_bytes_since_snapshot_survives_reopen(folder: pathlib.Path) -> None:
    write_log(folder, 10, Config(segment_bytes=1 << 20))
    backend = LogBackend(folder, SMALL)
    drain(backend.recover())
    assert backend.log_bytes_since_snapshot() == sum(12 + 8 + len(payload(s)) for s in range(1, 11))
    backend.write_snapshot(10, [])
    assert backend.log_bytes_since_snapshot() == 0
    backend.close()


def test_open_backend_maps_targets(tmp_path: pathlib.Path) -> None:
    config = Config()
    assert isinstance(open_backend(tmp_path / "a", config), LogBackend)
    assert isinstance(open_backend(str(tmp_path / "b"), config), LogBackend)
    backend = open_backend(f"file://{tmp_path}/c%20d", config)
    assert isinstance(backend, LogBackend)
    backend.recover()
    backend.close()
    assert (tmp_path / "c d" / "FORMAT").exists()
    assert isinstance(open_backend("memory://", config), MemoryBackend)
    with pytest.raises(InvalidArgument, match="unsupported storage scheme 'ftp://'"):
        open_backend("ftp://host/x", config)
    with pytest.raises(InvalidArgument, match="absolute"):
        open_backend("file://relative/x", config)


def test_public_surface_is_sorted_and_importable() -> None:
    from amber import persistence

    assert persistence.__all__ == sorted(persistence.__all__)
    for name in persistence.__all__:
        assert getattr(persistence, name) is not None
