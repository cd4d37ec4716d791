"""VolatileFiles: bytes reach the disk only at sync, so a process kill is a power cut."""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap

import pytest
from persistence_support import drain
from test_crash import CONFIG, Model, crash_cycle

import amber
from amber.persistence import LogBackend, OsFiles, VolatileFiles


def test_synced_bytes_survive_discarding_the_layer_and_unsynced_ones_do_not(
    tmp_path: pathlib.Path,
) -> None:
    path = str(tmp_path / "f")
    files = VolatileFiles()
    out = files.open_append(path)
    out.write(b"synced ")
    out.sync()
    out.write(b"pending")
    assert out.size == 14
    assert files.size(path) == 14
    assert files.read_bytes(path) == b"synced pending"  # what a reader of the page cache sees
    reader = files.open_read(path)
    assert reader.read() == b"synced pending"
    reader.close()
    assert files.pending_bytes(path) == 7
    out.close()  # no sync: still pending, still readable
    assert files.read_bytes(path) == b"synced pending"
    del files, out  # the process is gone without another sync
    assert OsFiles().read_bytes(path) == b"synced "


def test_crash_drops_pending_bytes_releases_locks_and_fails_later_calls(
    tmp_path: pathlib.Path,
) -> None:
    path = str(tmp_path / "f")
    files = VolatileFiles()
    files.lock(str(tmp_path / "LOCK"), "me")
    out = files.open_append(path)
    out.write(b"a" * 1000)
    out.sync()
    out.write(b"b" * 1000)
    files.crash()
    for call in (lambda: out.write(b"x"), out.sync, lambda: files.size(path)):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno in (errno.EIO, errno.EBADF)
    again = VolatileFiles()
    again.lock(str(tmp_path / "LOCK"), "me again").release()  # the dead holder let go
    assert again.read_bytes(path) == b"a" * 1000
    appended = again.open_append(path)
    assert appended.size == 1000
    appended.close()


def test_truncate_cuts_the_logical_content_and_makes_it_durable(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "f")
    files = VolatileFiles()
    out = files.open_append(path)
    out.write(b"0123")
    out.sync()
    out.write(b"456789")
    files.truncate(path, 7)  # keeps 3 of the pending bytes, durably
    assert files.read_bytes(path) == b"0123456"
    assert files.pending_bytes(path) == 0
    out.write(b"X")
    assert out.size == 8
    files.crash()
    assert OsFiles().read_bytes(path) == b"0123456"
    files = VolatileFiles()
    files.truncate(path, 2)
    files.crash()
    assert OsFiles().read_bytes(path) == b"01"


def test_a_temp_file_renamed_before_its_sync_arrives_empty(tmp_path: pathlib.Path) -> None:
    files = VolatileFiles()
    tmp, final = str(tmp_path / "a.tmp"), str(tmp_path / "a")
    out = files.create_exclusive(tmp)
    out.write(b"content")
    out.close()
    files.rename(tmp, final)
    files.fsync_dir(str(tmp_path))
    assert files.read_bytes(final) == b"content"  # the pending bytes moved with the file
    assert files.pending_bytes(tmp) == 0
    files.crash()
    assert OsFiles().read_bytes(final) == b""  # the name is durable, the data was not

    files = VolatileFiles()
    out = files.create_exclusive(tmp)
    out.write(b"synced first")
    out.sync()
    out.close()
    files.rename(tmp, final)  # replaces the empty one
    files.crash()
    assert OsFiles().read_bytes(final) == b"synced first"
    assert not os.path.exists(tmp)


def test_removing_a_file_forgets_its_pending_bytes(tmp_path: pathlib.Path) -> None:
    files = VolatileFiles()
    path = str(tmp_path / "f")
    out = files.open_append(path)
    out.write(b"x" * 10)
    out.close()
    files.remove(path)
    files.create_exclusive(path).close()
    assert files.size(path) == 0


@pytest.mark.parametrize("threaded", [False, True], ids=["between-ops", "mid-op"])
def test_log_backend_crash_cycles_lose_nothing_acknowledged(
    tmp_path: pathlib.Path, threaded: bool
) -> None:
    """The CrashFiles power-cut workload (test_crash.py), the crash played by VolatileFiles."""
    for seed in range(20):
        rng = random.Random(seed)
        folder = tmp_path / f"seed{seed}"
        model = Model()
        for _ in range(4):
            files = VolatileFiles()
            crash_cycle(files, files.crash, folder, model, rng, threaded)
        backend = LogBackend(folder, CONFIG)
        model.check(*drain(backend.recover()))
        backend.close()


@pytest.mark.parametrize(("durability", "kept"), [("always", True), ("never", False)])
def test_a_database_keeps_acknowledged_writes_only_if_they_were_synced(
    tmp_path: pathlib.Path, durability: str, kept: bool
) -> None:
    files = VolatileFiles()
    db = amber.open(tmp_path / "db", files=files, jobs=False, durability=durability)
    db.table("t")["k"] = "v"
    files.crash()
    with contextlib.suppress(Exception):  # it cannot flush: the process is dead
        db.close()
    with amber.open(tmp_path / "db", jobs=False) as again:
        assert again.table("t").get("k") == ("v" if kept else None)


_WRITER = textwrap.dedent(
    """
    import sys, time
    from amber.persistence import VolatileFiles
    out = VolatileFiles().open_append(sys.argv[1])
    out.write(b"A" * 5000)
    out.sync()
    out.write(b"B" * 5000)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_a_sigkilled_writer_leaves_only_its_synced_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == b"A" * 5000
