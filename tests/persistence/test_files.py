"""The file layers: OsFiles does what it says, CrashFiles forgets what a power cut would."""

from __future__ import annotations

import errno
import pathlib
import random

import pytest

from amber.persistence import CrashFiles, OsFiles
from amber.persistence.files import LockHeld
from amber.persistence.framing import SECTOR


def test_os_files_basics(tmp_path: pathlib.Path) -> None:
    files = OsFiles()
    sub = str(tmp_path / "a" / "b")
    files.makedirs(sub)
    files.makedirs(sub)
    path = f"{sub}/f"
    out = files.open_append(path)
    out.write(b"hello ")
    out.write(memoryview(b"world"))
    assert out.size == 11
    out.sync()
    out.close()
    out.close()
    again = files.open_append(path)
    assert again.size == 11
    again.close()
    assert files.read_bytes(path) == b"hello world"
    reader = files.open_read(path)
    assert reader.read(5) == b"hello"
    reader.close()
    assert files.listdir(sub) == ["f"]
    files.truncate(path, 5)
    assert files.size(path) == 5
    with pytest.raises(FileExistsError):
        files.create_exclusive(path)
    files.rename(path, f"{sub}/g")
    files.fsync_dir(sub)
    assert not files.exists(path)
    files.remove(f"{sub}/g")
    assert files.listdir(sub) == []


def test_os_files_write_after_close_raises_oserror(tmp_path: pathlib.Path) -> None:
    out = OsFiles().open_append(str(tmp_path / "f"))
    out.close()
    with pytest.raises(OSError):
        out.write(b"x")


def test_os_lock_is_exclusive_and_names_the_holder(tmp_path: pathlib.Path) -> None:
    files = OsFiles()
    path = str(tmp_path / "LOCK")
    held = files.lock(path, "pid 1\n")
    with pytest.raises(LockHeld) as info:
        files.lock(path, "pid 2\n")
    assert info.value.owner == "pid 1"
    assert files.read_bytes(path) == b"pid 1\n"  # the refused locker changed nothing
    held.release()
    held.release()
    files.lock(path, "pid 2\n").release()


def test_crash_keeps_only_synced_bytes(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    path = str(tmp_path / "f")
    out = files.open_append(path)
    files.fsync_dir(str(tmp_path))
    out.write(b"durable")
    out.sync()
    out.write(b" lost")
    assert files.durable_size(path) == 7
    files.crash()
    assert pathlib.Path(path).read_bytes() == b"durable"


def test_preexisting_content_counts_as_durable(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"old")
    files = CrashFiles()
    out = files.open_append(str(path))
    out.write(b"new")
    files.crash()
    assert path.read_bytes() == b"old"


def test_unsynced_create_is_undone_and_fsynced_one_kept(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    kept = files.create_exclusive(str(tmp_path / "kept"))
    kept.write(b"k")
    kept.sync()
    files.fsync_dir(str(tmp_path))
    lost = files.create_exclusive(str(tmp_path / "lost"))
    lost.write(b"l")
    lost.sync()  # the content is synced, but its directory entry is not
    files.crash()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]


def test_unsynced_rename_is_reverted_with_the_replaced_file(tmp_path: pathlib.Path) -> None:
    (tmp_path / "dst").write_bytes(b"old")
    files = CrashFiles()
    tmp = files.create_exclusive(str(tmp_path / "tmp"))
    tmp.write(b"new")
    tmp.sync()
    tmp.close()
    files.fsync_dir(str(tmp_path))
    files.rename(str(tmp_path / "tmp"), str(tmp_path / "dst"))
    assert (tmp_path / "dst").read_bytes() == b"new"
    files.crash()
    assert (tmp_path / "dst").read_bytes() == b"old"
    assert (tmp_path / "tmp").read_bytes() == b"new"


def test_fsynced_rename_stays(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    tmp = files.create_exclusive(str(tmp_path / "tmp"))
    tmp.write(b"new")
    tmp.sync()
    tmp.close()
    files.rename(str(tmp_path / "tmp"), str(tmp_path / "dst"))
    files.fsync_dir(str(tmp_path))
    files.crash()
    assert [p.name for p in tmp_path.iterdir()] == ["dst"]
    assert (tmp_path / "dst").read_bytes() == b"new"


def test_unsynced_remove_is_restored_with_durable_content(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    out = files.create_exclusive(str(tmp_path / "f"))
    out.write(b"synced")
    out.sync()
    out.write(b"+unsynced")
    out.close()
    files.fsync_dir(str(tmp_path))
    files.remove(str(tmp_path / "f"))
    files.crash()
    assert (tmp_path / "f").read_bytes() == b"synced"


def test_unsynced_makedirs_is_undone(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    files.makedirs(str(tmp_path / "a" / "b"))
    files.fsync_dir(str(tmp_path))  # "a" is durable, "a/b" is not
    files.makedirs(str(tmp_path / "lost" / "c"))
    files.crash()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    assert list((tmp_path / "a").iterdir()) == []


def test_truncate_is_durable(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    out = files.open_append(str(tmp_path / "f"))
    files.fsync_dir(str(tmp_path))
    out.write(b"0123456789")
    out.sync()
    files.truncate(str(tmp_path / "f"), 4)
    files.crash()
    assert (tmp_path / "f").read_bytes() == b"0123"


def test_after_a_crash_everything_fails_with_eio(tmp_path: pathlib.Path) -> None:
    files = CrashFiles()
    out = files.open_append(str(tmp_path / "f"))
    reader_path = tmp_path / "r"
    reader_path.write_bytes(b"data")
    reader = files.open_read(str(reader_path))
    lock = files.lock(str(tmp_path / "LOCK"), "me")
    files.crash()
    files.crash()  # already dead: nothing more happens
    for call in (
        lambda: out.write(b"x"),
        out.sync,
        lambda: reader.read(1),
        lambda: files.listdir(str(tmp_path)),
        lambda: files.open_append(str(tmp_path / "g")),
        lambda: files.fsync_dir(str(tmp_path)),
    ):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EIO
    out.close()
    reader.close()
    lock.release()
    # The dead process's lock is gone: a new one can take it.
    OsFiles().lock(str(tmp_path / "LOCK"), "next").release()


def test_torn_writes_keep_a_prefix_and_zero_whole_sectors(tmp_path: pathlib.Path) -> None:
    durable = b"D" * 700
    tail = bytes(range(1, 256)) * 12  # no zero bytes of its own
    seen_zeroes = seen_cut = False
    for seed in range(200):
        path = tmp_path / f"f{seed}"
        files = CrashFiles()
        out = files.open_append(str(path))
        files.fsync_dir(str(tmp_path))
        out.write(durable)
        out.sync()
        out.write(tail)
        files.crash(random.Random(seed))
        data = path.read_bytes()
        assert data[: len(durable)] == durable
        assert len(data) <= len(durable) + len(tail)
        zero_from = len(data.rstrip(b"\0"))  # the tail has no zero bytes of its own
        if zero_from < len(data):
            seen_zeroes = True
            # Zeros start at a sector boundary or right where the durable part ends.
            assert zero_from % SECTOR == 0 or zero_from == len(durable)
        assert data[len(durable) : zero_from] == tail[: zero_from - len(durable)]
        seen_cut = seen_cut or len(data) < len(durable) + len(tail)
    assert seen_zeroes and seen_cut
