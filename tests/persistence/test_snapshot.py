"""Snapshot files: atomic, lazily read, and any damage is corruption."""

from __future__ import annotations

import pathlib
import struct
from collections.abc import Iterator

import pytest
from persistence_support import SMALL, chunks_for, flip, read_log, snap_files, write_log

from amber.errors import Corrupted, StorageFailed
from amber.persistence import CrashFiles, LogBackend, OsFiles
from amber.persistence.framing import (
    FILE_HEADER_SIZE,
    HEADER_SIZE,
    encode_file_header,
    encode_frame,
)
from amber.persistence.snapshot import MAGIC, read_chunks, write_snapshot_file


def snapshot_folder(folder: pathlib.Path, chunks: list[bytes], last_seq: int = 10) -> pathlib.Path:
    write_log(folder, last_seq)
    backend = LogBackend(folder, SMALL)
    backend.recover()
    backend.write_snapshot(last_seq, chunks)
    backend.close()
    return snap_files(folder)[-1]


def frame_starts(chunks: list[bytes]) -> list[int]:
    starts, pos = [], FILE_HEADER_SIZE
    for chunk in chunks:
        starts.append(pos)
        pos += HEADER_SIZE + 1 + len(chunk)
    starts.append(pos)  # the end frame
    return starts


def test_round_trip_big_and_many_chunks(folder: pathlib.Path) -> None:
    chunks = [b"", b"x" * (3 << 20), *(bytes([i]) * i for i in range(200))]
    path = snapshot_folder(folder, chunks)
    assert path.name == f"{10:020d}.snap"
    assert path.read_bytes()[:8] == MAGIC
    snap, got, records, notes = read_log(folder)
    assert (snap, got, records, notes) == (10, chunks, [], [])


def test_chunks_are_read_lazily(tmp_path: pathlib.Path) -> None:
    files = OsFiles()
    write_snapshot_file(files, str(tmp_path), 7, [b"a", b"b", b"c"])
    reader = read_chunks(files, str(tmp_path / f"{7:020d}.snap"), 7)
    assert next(reader) == b"a"
    reader.close()  # closes the file: no ResourceWarning (warnings are errors)


def test_every_flipped_byte_is_corruption_at_its_frame(tmp_path: pathlib.Path) -> None:
    chunks = chunks_for(10, 4)
    path = snapshot_folder(tmp_path / "data", chunks)
    original = path.read_bytes()
    starts = frame_starts(chunks)
    for pos in range(0, len(original), 3):
        flip(path, pos)
        with pytest.raises(Corrupted) as info:
            read_log(tmp_path / "data")
        assert info.value.file == str(path)
        want = 0 if pos < FILE_HEADER_SIZE else max(s for s in starts if s <= pos)
        assert info.value.offset == want, pos
        path.write_bytes(original)


def test_truncated_snapshot_is_corruption(tmp_path: pathlib.Path) -> None:
    path = snapshot_folder(tmp_path / "data", chunks_for(10, 4))
    original = path.read_bytes()
    for cut in (
        0,
        10,
        FILE_HEADER_SIZE,
        FILE_HEADER_SIZE + 5,
        len(original) // 2,
        len(original) - 1,
    ):
        path.write_bytes(original[:cut])
        with pytest.raises(Corrupted) as info:
            read_log(tmp_path / "data")
        assert info.value.file == str(path)


def craft(path: pathlib.Path, last_seq: int, bodies: list[bytes]) -> None:
    path.write_bytes(encode_file_header(MAGIC, 1, last_seq) + b"".join(map(encode_frame, bodies)))


@pytest.mark.parametrize(
    ("bodies", "message"),
    [
        ([b"\x01a", b"\x01b"], "without its end frame"),
        ([b"\x01a", b"\x02" + struct.pack("<Q", 2)], "counts 2 chunks but 1"),
        ([b"\x01a", b"\x03zz", b"\x02" + struct.pack("<Q", 1)], "unknown snapshot frame kind"),
        ([b"\x02" + struct.pack("<Q", 0), b"\x01a"], "after the snapshot's end frame"),
        ([b"\x02\x00"], "unknown snapshot frame kind"),
    ],
)
def test_structural_damage_is_corruption(
    folder: pathlib.Path, bodies: list[bytes], message: str
) -> None:
    write_log(folder, 3)
    craft(folder / "snapshots" / f"{3:020d}.snap", 3, bodies)
    with pytest.raises(Corrupted, match=message):
        read_log(folder)


def test_header_seq_must_match_name(folder: pathlib.Path) -> None:
    write_log(folder, 3)
    craft(folder / "snapshots" / f"{3:020d}.snap", 2, [b"\x02" + struct.pack("<Q", 0)])
    with pytest.raises(Corrupted, match="name"):
        read_log(folder)


def test_damaged_newest_snapshot_names_the_older_one(folder: pathlib.Path) -> None:
    write_log(folder, 20)
    backend = LogBackend(folder, SMALL)
    backend.recover()
    backend.write_snapshot(10, chunks_for(10))
    backend.write_snapshot(20, chunks_for(20))
    backend.close()
    older, newest = snap_files(folder)
    flip(newest, FILE_HEADER_SIZE + 20)
    with pytest.raises(Corrupted, match=f"older snapshot snapshots/{older.name} exists"):
        read_log(folder)
    newest.rename(folder / "damaged.snap.bak")  # what the message tells the user to do
    snap, chunks, records, _ = read_log(folder)
    assert (snap, chunks, [s for s, _ in records]) == (10, chunks_for(10), list(range(11, 21)))


def test_leftover_temp_file_is_removed_with_a_note(folder: pathlib.Path) -> None:
    write_log(folder, 5)
    tmp = folder / "snapshots" / f"{5:020d}.snap.tmp"
    tmp.write_bytes(b"half a snapshot")
    _, _, records, notes = read_log(folder)
    assert len(records) == 5
    assert notes == [f"removed unfinished snapshot snapshots/{tmp.name}"]
    assert not tmp.exists()


def test_crash_during_snapshot_leaves_the_old_one_whole(folder: pathlib.Path) -> None:
    write_log(folder, 20)
    files = CrashFiles()
    backend = LogBackend(folder, SMALL, files=files)
    backend.recover()
    backend.write_snapshot(10, chunks_for(10))

    def chunks_then_power_cut() -> Iterator[bytes]:
        yield b"first"
        files.crash()
        yield b"second"

    with pytest.raises(StorageFailed):
        backend.write_snapshot(20, chunks_then_power_cut())
    snap, chunks, records, notes = read_log(folder)
    assert (snap, chunks) == (10, chunks_for(10))
    assert [s for s, _ in records] == list(range(11, 21))
    assert [p.name for p in (folder / "snapshots").iterdir()] == [f"{10:020d}.snap"]
    assert notes in ([], [f"removed unfinished snapshot snapshots/{20:020d}.snap.tmp"])
