"""Snapshot files: written whole and renamed into place, read back lazily.

The format is specified in :mod:`amber.persistence.log`. Here: a snapshot is
``snapshots/{last_seq:020d}.snap`` = file header (magic ``AMBRSNP\\0``) +
one frame per chunk (body ``0x01`` + chunk) + an end frame (body ``0x02`` +
``<u64 chunk count>``). A snapshot appears only by rename after an fsync, so
any damage — a bad frame, a missing end frame, a wrong count — is corruption.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from collections.abc import Generator, Iterable

from ..errors import Corrupted, TooLarge
from .files import FileLayer, ReadFile
from .framing import (
    FILE_HEADER_SIZE,
    HEADER_SIZE,
    MAX_BODY,
    checksum,
    decode_file_header,
    encode_file_header,
    encode_frame,
    encode_frame_header,
    frame_length,
)

__all__ = [
    "MAGIC",
    "TMP_SUFFIX",
    "VERSION",
    "parse_snapshot_name",
    "read_chunks",
    "snapshot_name",
    "write_chunk_file",
    "write_snapshot_file",
]

MAGIC = b"AMBRSNP\0"
VERSION = 1
TMP_SUFFIX = ".tmp"
_CHUNK = b"\x01"
_END = b"\x02"
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_NAME = re.compile(r"^(\d{20})\.snap$")
#: Frames are gathered into writes of about this size.
_WRITE_BYTES = 1024 * 1024


def snapshot_name(last_seq: int) -> str:
    return f"{last_seq:020d}.snap"


def parse_snapshot_name(name: str) -> int | None:
    """The ``last_seq`` a snapshot file name carries, or None for other names."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def write_snapshot_file(
    files: FileLayer, folder: str, last_seq: int, chunks: Iterable[bytes]
) -> int:
    """Write ``{last_seq}.snap`` atomically (tmp, fsync, rename, fsync dir); return its size.

    On any error the temp file is removed and nothing else has changed.
    """
    path = os.path.join(folder, snapshot_name(last_seq))
    tmp = path + TMP_SUFFIX
    size = write_chunk_file(files, tmp, last_seq, chunks)
    files.rename(tmp, path)
    files.fsync_dir(folder)
    return size


def write_chunk_file(files: FileLayer, path: str, last_seq: int, chunks: Iterable[bytes]) -> int:
    """Write a snapshot-format file at ``path`` and fsync it (no rename); return its size.

    The caller renames it into place. On any error the file is removed.
    """
    if files.exists(path):
        files.remove(path)
    out = files.create_exclusive(path)
    try:
        buf = bytearray(encode_file_header(MAGIC, VERSION, last_seq))
        count = 0
        for chunk in chunks:
            if len(chunk) + 1 > MAX_BODY:
                raise TooLarge(f"snapshot chunk of {len(chunk)} bytes exceeds {MAX_BODY - 1}")
            buf += encode_frame_header(len(chunk) + 1, checksum(chunk, checksum(_CHUNK)))
            buf += _CHUNK
            buf += chunk
            count += 1
            if len(buf) >= _WRITE_BYTES:
                out.write(buf)
                buf = bytearray()
        buf += encode_frame(_END + _U64.pack(count))
        out.write(buf)
        out.sync()
        size = out.size
    except BaseException:
        out.close()
        with contextlib.suppress(OSError):  # the first error is the one to report
            files.remove(path)
        raise
    out.close()
    return size


def _read_exact(reader: ReadFile, size: int) -> bytes:
    data = reader.read(size)
    while len(data) < size:
        more = reader.read(size - len(data))
        if not more:
            break
        data += more
    return data


def read_chunks(
    files: FileLayer, path: str, last_seq: int | None, hint: str = ""
) -> Generator[bytes, None, None]:
    """Yield the chunks of a snapshot lazily, verifying every frame.

    Raises ``Corrupted`` (with ``hint`` appended to the message) at the first
    damage; a caller that must not act on a damaged snapshot consumes it once
    to verify before using it (the log backend does, at recovery).
    """
    reader = files.open_read(path)
    try:
        head = decode_file_header(_read_exact(reader, FILE_HEADER_SIZE), MAGIC)
        if isinstance(head, str):
            raise Corrupted(f"snapshot header is damaged: {head}{hint}", path, 0)
        version, seq = head
        if version != VERSION:
            raise Corrupted(f"unsupported snapshot format version {version}{hint}", path, 8)
        if last_seq is not None and seq != last_seq:
            raise Corrupted(f"snapshot header says seq {seq}, its name {last_seq}{hint}", path, 12)
        offset = FILE_HEADER_SIZE
        count = 0
        while True:
            header = _read_exact(reader, HEADER_SIZE)
            if len(header) < HEADER_SIZE:
                raise Corrupted(f"snapshot ends without its end frame{hint}", path, offset)
            length = frame_length(header)
            if length is None or not 1 <= length <= MAX_BODY:
                raise Corrupted(f"snapshot frame header is damaged{hint}", path, offset)
            kind = _read_exact(reader, 1)
            body = _read_exact(reader, length - 1)
            if len(kind) + len(body) < length:
                raise Corrupted(f"snapshot ends inside a frame{hint}", path, offset)
            if checksum(body, checksum(kind)) != _U32.unpack_from(header, 4)[0]:
                raise Corrupted(f"snapshot frame checksum mismatch{hint}", path, offset)
            if kind == _CHUNK:
                yield body
                count += 1
            elif kind == _END and len(body) == _U64.size:
                (expected,) = _U64.unpack(body)
                if expected != count:
                    raise Corrupted(
                        f"snapshot end frame counts {expected} chunks but {count} were read{hint}",
                        path,
                        offset,
                    )
                if reader.read(1):
                    end = offset + HEADER_SIZE + length
                    raise Corrupted(f"data after the snapshot's end frame{hint}", path, end)
                return
            else:
                raise Corrupted(f"unknown snapshot frame kind {kind!r}{hint}", path, offset)
            offset += HEADER_SIZE + length
    finally:
        reader.close()
