"""WAL segments on real files: rolls, torn tails, corruption found with file and offset."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from persistence_support import (
    SMALL,
    expected,
    flip,
    payload,
    read_log,
    wal_files,
    write_log,
)

from amber.config import Config
from amber.errors import Corrupted
from amber.persistence import LogBackend
from amber.persistence.framing import (
    FILE_HEADER_SIZE,
    SECTOR,
    FrameReader,
    encode_file_header,
    encode_frame,
)
from amber.persistence.wal import MAGIC


def frame_offsets(path: pathlib.Path) -> list[int]:
    return [offset for offset, _ in FrameReader(path.read_bytes(), FILE_HEADER_SIZE)]


def test_segment_names_and_headers(folder: pathlib.Path) -> None:
    write_log(folder, 200)
    segments = wal_files(folder)
    assert len(segments) > 5  # 1 KiB segments roll often
    firsts = [int(p.stem) for p in segments]
    assert firsts[0] == 1
    assert all(len(p.stem) == 20 for p in segments)
    for path in segments:
        data = path.read_bytes()
        assert data[:8] == MAGIC
        assert int.from_bytes(data[12:20], "little") == int(path.stem)
    assert read_log(folder)[2] == expected(1, 200)


def test_records_and_groups_cross_segment_rolls(folder: pathlib.Path) -> None:
    write_log(folder, 500, per_flush=37)
    _, _, records, notes = read_log(folder)
    assert records == expected(1, 500)
    assert notes == []


def test_tiny_segments_roll_after_every_group_and_never_empty(folder: pathlib.Path) -> None:
    backend = LogBackend(folder, Config(segment_bytes=1))
    backend.recover()
    for seq in range(1, 11):
        backend.append(seq, payload(seq))
        backend.flush(sync=True)
        backend.flush(sync=True)  # nothing new: no further roll
    backend.close()
    assert [int(p.stem) for p in wal_files(folder)] == list(range(1, 12))
    assert read_log(folder)[2] == expected(1, 10)


def last_frame_setup(folder: pathlib.Path) -> tuple[pathlib.Path, int]:
    """Records 1..6 in one segment; returns it and the offset of record 6's frame."""
    write_log(folder, 6, Config(segment_bytes=1 << 20))
    (segment,) = wal_files(folder)
    return segment, frame_offsets(segment)[-1]


def test_cut_at_every_byte_of_the_last_frame_is_a_torn_tail(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "source"
    segment, last = last_frame_setup(source)
    size = segment.stat().st_size
    for cut in range(last, size):
        copy = tmp_path / f"cut{cut}"
        shutil.copytree(source, copy)
        copied = copy / "wal" / segment.name
        with open(copied, "r+b") as f:
            f.truncate(cut)
        _, _, records, notes = read_log(copy)
        assert records == expected(1, 5), cut
        if cut == last:
            assert notes == []
        else:
            assert notes == [
                f"truncated torn tail of wal/{segment.name} at offset {last} ({cut - last} bytes)"
            ]
            assert copied.stat().st_size == last  # the repair is on disk
        shutil.rmtree(copy)


def test_writes_continue_after_a_repaired_torn_tail(folder: pathlib.Path) -> None:
    segment, last = last_frame_setup(folder)
    with open(segment, "r+b") as f:
        f.truncate(last + 5)
    backend = LogBackend(folder, SMALL)
    recovered = backend.recover()
    assert list(recovered.records) == expected(1, 5)
    backend.append(6, b"again")
    backend.close()
    assert read_log(folder)[2] == [*expected(1, 5), (6, b"again")]


def test_unwritten_zero_page_after_the_tail_is_torn(folder: pathlib.Path) -> None:
    segment, _ = last_frame_setup(folder)
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(bytes(4096))
    _, _, records, notes = read_log(folder)
    assert records == expected(1, 6)
    assert notes == [f"truncated torn tail of wal/{segment.name} at offset {size} (4096 bytes)"]


def test_last_frame_with_an_unwritten_sector_is_torn(folder: pathlib.Path) -> None:
    backend = LogBackend(folder, Config(segment_bytes=1 << 20))
    backend.recover()
    backend.append(1, b"a" * 300)
    backend.append(2, b"b" * 1000)  # straddles offsets 512 and 1024
    backend.close()
    (segment,) = wal_files(folder)
    data = bytearray(segment.read_bytes())
    last = frame_offsets(segment)[-1]
    boundary = (last // SECTOR + 1) * SECTOR
    data[boundary : boundary + SECTOR] = bytes(SECTOR)  # a middle sector never written
    segment.write_bytes(bytes(data))
    _, _, records, notes = read_log(folder)
    assert records == [(1, b"a" * 300)]
    assert f"at offset {last}" in notes[0]


def test_flipped_byte_in_a_middle_record_is_corruption(folder: pathlib.Path) -> None:
    segment, _ = last_frame_setup(folder)
    third = frame_offsets(segment)[2]
    flip(segment, third + 20)
    with pytest.raises(Corrupted) as info:
        read_log(folder)
    assert info.value.file == str(segment)
    assert info.value.offset == third
    assert segment.stat().st_size > third  # nothing was cut


def test_flipped_byte_in_the_last_record_is_corruption_not_a_torn_tail(
    folder: pathlib.Path,
) -> None:
    segment, last = last_frame_setup(folder)
    flip(segment, segment.stat().st_size - 1)
    with pytest.raises(Corrupted) as info:
        read_log(folder)
    assert (info.value.file, info.value.offset) == (str(segment), last)


def test_flipped_byte_in_a_segment_header_is_corruption(folder: pathlib.Path) -> None:
    segment, _ = last_frame_setup(folder)
    flip(segment, 14)
    with pytest.raises(Corrupted, match="header") as info:
        read_log(folder)
    assert (info.value.file, info.value.offset) == (str(segment), 0)


def test_flipped_byte_in_an_older_segment_is_corruption(folder: pathlib.Path) -> None:
    write_log(folder, 100)
    older = wal_files(folder)[1]
    offsets = frame_offsets(older)
    flip(older, offsets[-1] + 3)
    with pytest.raises(Corrupted) as info:
        read_log(folder)
    assert (info.value.file, info.value.offset) == (str(older), offsets[-1])


def test_torn_looking_tail_of_an_older_segment_is_corruption(folder: pathlib.Path) -> None:
    write_log(folder, 100)
    older = wal_files(folder)[1]
    last = frame_offsets(older)[-1]
    with open(older, "r+b") as f:
        f.truncate(last + 4)
    with pytest.raises(Corrupted) as info:
        read_log(folder)
    assert (info.value.file, info.value.offset) == (str(older), last)


def test_missing_middle_segment_is_a_gap(folder: pathlib.Path) -> None:
    write_log(folder, 100)
    segments = wal_files(folder)
    segments[2].unlink()
    with pytest.raises(Corrupted, match="missing") as info:
        read_log(folder)
    assert info.value.file == str(segments[3])


def test_missing_first_segment_without_snapshot_is_corruption(folder: pathlib.Path) -> None:
    write_log(folder, 100)
    first = wal_files(folder)[0]
    first.unlink()
    with pytest.raises(Corrupted, match="records 1\\.\\."):
        read_log(folder)


def test_overlapping_segments_are_corruption(folder: pathlib.Path) -> None:
    write_log(folder, 100)
    segments = wal_files(folder)
    dup = int(segments[2].stem) - 1  # the last record of segments[1], again
    impostor = folder / "wal" / f"{dup:020d}.wal"
    body = dup.to_bytes(8, "little") + payload(dup)
    impostor.write_bytes(encode_file_header(MAGIC, 1, dup) + encode_frame(body))
    with pytest.raises(Corrupted, match="already holds records") as info:
        read_log(folder)
    assert info.value.file == str(impostor)


def test_newest_segment_with_torn_header_is_removed(folder: pathlib.Path) -> None:
    write_log(folder, 20)
    newest = wal_files(folder)[-1]
    _, _, records, _ = read_log(folder)
    next_first = records[-1][0] + 1
    for content in (b"", b"AMBRWAL", bytes(FILE_HEADER_SIZE), bytes(4096)):
        stray = newest.with_name(f"{next_first:020d}.wal")
        stray.write_bytes(content)
        _, _, records, notes = read_log(folder)
        assert records == expected(1, 20)
        assert notes == [
            f"removed wal/{stray.name}: its header was never completely written "
            f"({len(content)} bytes)"
        ]
        assert not stray.exists()


def test_damaged_header_with_data_after_it_is_corruption(folder: pathlib.Path) -> None:
    write_log(folder, 20)
    newest = wal_files(folder)[-1]
    data = bytearray(newest.read_bytes())
    data[:FILE_HEADER_SIZE] = bytes(FILE_HEADER_SIZE)
    newest.write_bytes(bytes(data))
    with pytest.raises(Corrupted, match="header"):
        read_log(folder)


def test_segment_header_seq_must_match_its_name(folder: pathlib.Path) -> None:
    write_log(folder, 100)
    second = wal_files(folder)[1]
    second.rename(second.with_name(f"{int(second.stem) + 1:020d}.wal"))
    with pytest.raises(Corrupted, match="name"):
        read_log(folder)


def test_corruption_in_a_segment_covered_by_a_snapshot_says_how_to_start(
    folder: pathlib.Path,
) -> None:
    backend = LogBackend(folder, Config(segment_bytes=1024, keep_snapshots=2))
    backend.recover()
    for seq in range(1, 101):
        backend.append(seq, payload(seq))
        backend.flush(sync=True)
    backend.write_snapshot(50, [b"s"])
    backend.write_snapshot(100, [b"s"])
    backend.close()
    first = wal_files(folder)[0]
    flip(first, frame_offsets(first)[0] + 14)
    with pytest.raises(Corrupted, match="moving this file out"):
        read_log(folder)
