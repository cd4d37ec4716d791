"""Sans-I/O record framing shared by the WAL, snapshots and later backends.

A **frame** is a 12-byte header followed by the body::

    <u32 length><u32 crc32c(body)><u32 crc32c(first 8 header bytes)>  body

(all integers little-endian). The header carries its own checksum so a
damaged length is never trusted. A body may not exceed :data:`MAX_BODY`.

A **file header** (WAL segments, snapshots) is 24 bytes::

    <8-byte magic><u32 format version><u64 seq><u32 crc32c(first 20 bytes)>

Reading
-------
:class:`FrameReader` walks a buffer that holds a whole file, starting at an
offset, and yields ``(offset, body)`` for each good frame. It stops at the end
of the buffer (:attr:`Stop.END`) or at the first bad frame at offset ``p``,
which it classifies as :attr:`Stop.TORN` or :attr:`Stop.CORRUPT`.

**The torn-tail rule** (the WAL's spec). A bad frame at ``p`` is *torn* — the
remains of a write that was never acknowledged — iff one of:

1. the file ends inside the 12-byte header;
2. the header checksum holds but the body runs past the end of the file;
3. one of the *sector pieces* of the frame is all zeros: the frame's bytes
   (``[p, p+12+length)`` when the header checksum holds, else just the header
   ``[p, p+12)``) split at 512-byte-aligned file offsets. An all-zero piece
   is a sector the disk never wrote (etcd's rule).

Anything else is corruption: a whole frame with a bad body checksum and no
zero sector, a bad header checksum over non-zero bytes, a checksummed length
above :data:`MAX_BODY`. The reader only classifies; the caller decides what a
torn frame means (the WAL accepts one only at the end of its newest segment;
a snapshot never).
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterator

import crc32c as _crc32c

__all__ = [
    "FILE_HEADER_SIZE",
    "HEADER_SIZE",
    "MAX_BODY",
    "SECTOR",
    "FrameReader",
    "Stop",
    "checksum",
    "decode_file_header",
    "encode_file_header",
    "encode_frame",
    "encode_frame_header",
    "frame_length",
    "has_zero_sector",
]

HEADER_SIZE = 12
FILE_HEADER_SIZE = 24
#: Largest body a frame may carry; guards against trusting an absurd length.
MAX_BODY = 256 * 1024 * 1024
SECTOR = 512

_HEADER = struct.Struct("<III")
_HEAD8 = struct.Struct("<II")
_FILE_HEADER = struct.Struct("<8sIQ")
_U32 = struct.Struct("<I")


def checksum(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``value`` (for data in parts)."""
    result: int = _crc32c.crc32c(data, value)
    return result


def encode_frame_header(length: int, body_crc: int) -> bytes:
    """The 12-byte header for a body of ``length`` bytes with checksum ``body_crc``."""
    if length > MAX_BODY:
        raise ValueError(f"frame body of {length} bytes exceeds the limit of {MAX_BODY}")
    head = _HEAD8.pack(length, body_crc)
    return head + _U32.pack(checksum(head))


def encode_frame(body: bytes | bytearray | memoryview) -> bytes:
    """One complete frame carrying ``body``."""
    return encode_frame_header(len(body), checksum(body)) + bytes(body)


def frame_length(header: bytes | bytearray | memoryview) -> int | None:
    """The body length a 12-byte header announces, or None if its checksum fails."""
    length, _, head_crc = _HEADER.unpack(header)
    if checksum(header[:8]) != head_crc:
        return None
    return int(length)


def _body_crc(header: bytes | bytearray | memoryview) -> int:
    """The body checksum a (verified) header carries."""
    return int(_HEADER.unpack(header)[1])


def has_zero_sector(buf: bytes | bytearray, start: int, end: int) -> bool:
    """Whether a piece of ``buf[start:end]``, split at 512-byte offsets, is all zeros."""
    end = min(end, len(buf))
    pos = start
    while pos < end:
        piece_end = min(end, (pos // SECTOR + 1) * SECTOR)
        if buf.count(0, pos, piece_end) == piece_end - pos:
            return True
        pos = piece_end
    return False


def encode_file_header(magic: bytes, version: int, seq: int) -> bytes:
    """The 24-byte header that opens a WAL segment or a snapshot file."""
    head = _FILE_HEADER.pack(magic, version, seq)
    return head + _U32.pack(checksum(head))


def decode_file_header(data: bytes | bytearray, magic: bytes) -> tuple[int, int] | str:
    """``(version, seq)`` from a file header, or a string saying what is wrong."""
    if len(data) < FILE_HEADER_SIZE:
        return f"file is {len(data)} bytes, shorter than its {FILE_HEADER_SIZE}-byte header"
    found, version, seq = _FILE_HEADER.unpack_from(data)
    (crc,) = _U32.unpack_from(data, 20)
    if checksum(memoryview(data)[:20]) != crc:
        return "file header checksum mismatch"
    if found != magic:
        return f"wrong magic {found!r} (expected {magic!r})"
    return int(version), int(seq)


class Stop(enum.Enum):
    """Why a :class:`FrameReader` stopped."""

    END = "end"  # the buffer ended exactly after a good frame
    TORN = "torn"  # a torn tail by the rule in the module doc
    CORRUPT = "corrupt"  # damage the rule does not explain


class FrameReader:
    """Walks the frames of ``buf`` (a whole file) from ``start`` to ``end``; never does I/O.

    Iterate it for ``(offset, body)``; afterwards :attr:`stop`,
    :attr:`offset` (where the bad frame starts, or the end) and
    :attr:`reason` tell why it stopped.
    """

    def __init__(self, buf: bytes | bytearray, start: int = 0, end: int | None = None) -> None:
        self._buf = buf
        self._start = start
        self._end = len(buf) if end is None else min(end, len(buf))
        self.stop: Stop | None = None
        self.offset = start
        self.reason = ""

    def __iter__(self) -> Iterator[tuple[int, memoryview]]:
        buf = self._buf
        view = memoryview(buf)
        size = self._end
        pos = self._start
        while pos < size:
            if size - pos < HEADER_SIZE:
                self._halt(pos, Stop.TORN, f"file ends inside a frame header at {pos}")
                return
            header = view[pos : pos + HEADER_SIZE]
            length = frame_length(header)
            if length is None:
                torn = has_zero_sector(buf, pos, min(size, pos + HEADER_SIZE))
                why = "frame header checksum mismatch"
                self._halt(pos, Stop.TORN if torn else Stop.CORRUPT, why)
                return
            if length > MAX_BODY:
                self._halt(pos, Stop.CORRUPT, f"frame length {length} exceeds {MAX_BODY}")
                return
            end = pos + HEADER_SIZE + length
            if end > size:
                why = f"frame body runs past the end of the file ({end - size} bytes missing)"
                self._halt(pos, Stop.TORN, why)
                return
            body = view[pos + HEADER_SIZE : end]
            if checksum(body) != _body_crc(header):
                torn = has_zero_sector(buf, pos, end)
                why = "frame body checksum mismatch"
                self._halt(pos, Stop.TORN if torn else Stop.CORRUPT, why)
                return
            yield pos, body
            pos = end
        self._halt(pos, Stop.END, "")

    def _halt(self, pos: int, stop: Stop, reason: str) -> None:
        self.offset = pos
        self.stop = stop
        self.reason = reason
