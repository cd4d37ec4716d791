"""The sans-I/O framing: feed bytes, check what comes out and why it stopped."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from amber.persistence.framing import (
    FILE_HEADER_SIZE,
    HEADER_SIZE,
    MAX_BODY,
    SECTOR,
    FrameReader,
    Stop,
    checksum,
    decode_file_header,
    encode_file_header,
    encode_frame,
    frame_length,
    has_zero_sector,
)

bodies = st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=8)


def scan(buf: bytes, start: int = 0) -> tuple[list[tuple[int, bytes]], FrameReader]:
    reader = FrameReader(buf, start)
    frames = [(offset, bytes(body)) for offset, body in reader]
    return frames, reader


def test_frame_layout() -> None:
    frame = encode_frame(b"hello")
    length, body_crc, head_crc = struct.unpack_from("<III", frame)
    assert (length, body_crc) == (5, checksum(b"hello"))
    assert head_crc == checksum(frame[:8])
    assert frame[HEADER_SIZE:] == b"hello"
    assert frame_length(frame[:HEADER_SIZE]) == 5


def test_checksum_is_crc32c() -> None:
    assert checksum(b"123456789") == 0xE3069283  # the CRC-32C check value


@given(bodies)
def test_round_trip(items: list[bytes]) -> None:
    buf = b"".join(encode_frame(b) for b in items)
    frames, reader = scan(buf)
    assert [b for _, b in frames] == items
    assert reader.stop is Stop.END
    assert reader.offset == len(buf)


@given(bodies, st.data())
def test_any_cut_inside_the_last_frame_is_torn(items: list[bytes], data: st.DataObject) -> None:
    buf = b"".join(encode_frame(b) for b in items)
    last = len(buf) - HEADER_SIZE - len(items[-1])
    cut = data.draw(st.integers(last + 1, len(buf) - 1))
    frames, reader = scan(buf[:cut])
    assert [b for _, b in frames] == items[:-1]
    assert (reader.stop, reader.offset) == (Stop.TORN, last)


@given(bodies, st.data())
def test_a_flipped_byte_is_never_passed_off_as_data(
    items: list[bytes], data: st.DataObject
) -> None:
    buf = bytearray(b"".join(encode_frame(b) for b in items))
    pos = data.draw(st.integers(0, len(buf) - 1))
    buf[pos] ^= data.draw(st.integers(1, 255))
    frames, reader = scan(bytes(buf))
    assert reader.stop is not Stop.END
    assert [b for _, b in frames] == items[: len(frames)]
    assert reader.offset <= pos


def test_bad_body_in_a_whole_frame_is_corruption() -> None:
    buf = bytearray(encode_frame(b"a" * 50) + encode_frame(b"b" * 50))
    buf[-1] ^= 1  # the last frame, no zero sector: not a torn write
    frames, reader = scan(bytes(buf))
    assert len(frames) == 1
    assert (reader.stop, reader.offset) == (Stop.CORRUPT, HEADER_SIZE + 50)
    assert "body checksum" in reader.reason


def test_bad_header_over_nonzero_bytes_is_corruption() -> None:
    buf = bytearray(encode_frame(b"a" * 50) + encode_frame(b"b" * 50))
    buf[HEADER_SIZE + 50] ^= 1
    _, reader = scan(bytes(buf))
    assert reader.stop is Stop.CORRUPT
    assert "header checksum" in reader.reason


def test_absurd_length_with_valid_header_checksum_is_corruption() -> None:
    head = struct.pack("<II", MAX_BODY + 1, 0)
    buf = head + struct.pack("<I", checksum(head)) + b"x" * 20
    _, reader = scan(buf)
    assert reader.stop is Stop.CORRUPT


def test_body_running_past_eof_is_torn() -> None:
    buf = encode_frame(b"a" * 100)[:-1]
    _, reader = scan(buf)
    assert (reader.stop, reader.offset) == (Stop.TORN, 0)


def test_unwritten_zero_page_after_the_last_frame_is_torn() -> None:
    good = encode_frame(b"a" * 100)
    frames, reader = scan(good + bytes(4096))
    assert len(frames) == 1
    assert (reader.stop, reader.offset) == (Stop.TORN, len(good))


def test_frame_whose_later_sector_was_never_written_is_torn() -> None:
    first = encode_frame(b"a" * 400)  # 412 bytes: the next frame straddles offset 512
    second = bytearray(encode_frame(b"b" * 300))
    buf = bytearray(first + second)
    buf[SECTOR:] = bytes(len(buf) - SECTOR)  # the sector from 512 on never reached the disk
    frames, reader = scan(bytes(buf))
    assert len(frames) == 1
    assert (reader.stop, reader.offset) == (Stop.TORN, len(first))


def test_zeros_from_an_unaligned_offset_mid_body_are_corruption() -> None:
    # A disk writes whole sectors: zeros that start mid-sector inside a
    # frame are not an unwritten sector, so the rule does not excuse them.
    buf = bytearray(encode_frame(b"a" * 100))
    buf[60:] = bytes(len(buf) - 60)
    _, reader = scan(bytes(buf))
    assert reader.stop is Stop.CORRUPT


def test_zero_pieces_are_split_at_sector_boundaries() -> None:
    assert has_zero_sector(bytes(1024), 0, 1024)
    assert has_zero_sector(b"x" * 512 + bytes(10), 0, 522)
    assert not has_zero_sector(b"x" * 512 + bytes(10) + b"y", 0, 523)
    assert has_zero_sector(b"x" * 500 + bytes(12), 500, 512)
    assert not has_zero_sector(b"x" * 600, 0, 600)


def test_reader_starts_at_offset_and_stops_at_end() -> None:
    prefix = b"P" * 24
    buf = prefix + encode_frame(b"one") + encode_frame(b"two")
    reader = FrameReader(buf, len(prefix), len(buf) - HEADER_SIZE - 3)
    assert [(o, bytes(b)) for o, b in reader] == [(24, b"one")]
    assert reader.stop is Stop.END


def test_file_header_round_trip_and_damage() -> None:
    head = encode_file_header(b"AMBRWAL\0", 1, 42)
    assert len(head) == FILE_HEADER_SIZE
    assert decode_file_header(head, b"AMBRWAL\0") == (1, 42)
    assert "magic" in str(decode_file_header(head, b"AMBRSNP\0"))
    damaged = bytearray(head)
    damaged[9] ^= 1
    assert "checksum" in str(decode_file_header(bytes(damaged), b"AMBRWAL\0"))
    assert "shorter" in str(decode_file_header(head[:10], b"AMBRWAL\0"))


def test_encoding_refuses_oversized_bodies() -> None:
    from amber.persistence.framing import encode_frame_header

    with pytest.raises(ValueError):
        encode_frame_header(MAX_BODY + 1, 0)
