"""Write-ahead log segments: the reader that recovers them and the group-commit writer.

The format is specified in :mod:`amber.persistence.log`. Here: a segment is
``wal/{first_seq:020d}.wal`` = file header (magic ``AMBRWAL\\0``) + frames
whose body is ``<u64 seq> + payload``; seqs run on without gaps across
segments, and only the newest segment may end in a torn tail.
:func:`verify_wal` checks one segment held in memory; the ``s3`` backend
verifies its WAL objects (the same format, one per flush) with it too.
"""

from __future__ import annotations

import os
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

from ..errors import Corrupted, InvalidArgument, TooLarge
from .files import AppendFile, FileLayer
from .framing import (
    FILE_HEADER_SIZE,
    HEADER_SIZE,
    MAX_BODY,
    FrameReader,
    Stop,
    checksum,
    decode_file_header,
    encode_file_header,
    encode_frame_header,
)

__all__ = [
    "MAGIC",
    "OBJECT",
    "SEGMENT",
    "VERSION",
    "Segment",
    "WalRecords",
    "WalState",
    "WalWriter",
    "Wording",
    "check_file_header",
    "read_records",
    "recover_wal",
    "verify_wal",
]

MAGIC = b"AMBRWAL\0"
VERSION = 1
_SEQ = struct.Struct("<Q")
_NAME = re.compile(r"^(\d{20})\.wal$")


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.wal"


@dataclass(slots=True)
class Segment:
    """A verified segment: records ``[first_seq, next_seq)`` in bytes ``[0, size)``."""

    path: str
    first_seq: int
    next_seq: int
    size: int


@dataclass(slots=True)
class WalState:
    """What :func:`recover_wal` found."""

    segments: list[Segment]
    notes: list[str] = field(default_factory=list)
    #: Frame bytes of the records after the snapshot (for the auto-snapshot trigger).
    bytes_after: int = 0


def _display(path: str) -> str:
    return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))


def recover_wal(files: FileLayer, folder: str, after: int) -> WalState:
    """Verify every segment, repair the newest one's torn tail, check the seqs.

    ``after`` is the newest snapshot's ``last_seq`` (0 without one): records up
    to it may be missing, every record after it must be here.
    """
    found = sorted(
        (int(m.group(1)), name) for name in files.listdir(folder) if (m := _NAME.match(name))
    )
    state = WalState([])
    for i, (first, name) in enumerate(found):
        path = os.path.join(folder, name)
        newest = i == len(found) - 1
        covered = not newest and found[i + 1][0] - 1 <= after
        hint = (
            f"; every record in it is also in snapshot {after}, so moving this file out of "
            "the folder lets Amber start"
            if covered
            else ""
        )
        data = files.read_bytes(path)
        # A header is synced before any record goes in, so a newest segment
        # whose header never fully arrived holds nothing acknowledged.
        if newest and _header_never_written(data):
            files.remove(path)
            files.fsync_dir(folder)
            state.notes.append(
                f"removed {_display(path)}: its header was never completely written "
                f"({len(data)} bytes)"
            )
            continue
        records = verify_wal(data, first, path, SEGMENT, hint=hint)
        for seq, _, frame_bytes in records:
            if seq > after:
                state.bytes_after += frame_bytes
        end = records.offset
        if records.finish(torn_ok=newest):
            files.truncate(path, end)
            state.notes.append(
                f"truncated torn tail of {_display(path)} at offset {end} ({len(data) - end} bytes)"
            )
        state.segments.append(Segment(path, first, records.next_seq, end))
    _check_contiguous(state.segments, after)
    return state


def _header_never_written(data: bytes) -> bool:
    """Too short for a header, or zeros only: never a valid header (its magic is not zero)."""
    return len(data) < FILE_HEADER_SIZE or (data[0] == 0 and data.count(0) == len(data))


@dataclass(frozen=True, slots=True)
class Wording:
    """How verification errors name what they are about: a segment file or an S3 object."""

    #: What is verified: ``"WAL segment"`` or ``"WAL object"``.
    kind: str
    #: Where its expected first seq comes from: its file ``"name"`` or its object ``"key"``.
    named_by: str


#: A segment file of the ``log`` backend.
SEGMENT = Wording("WAL segment", "name")
#: A WAL object of the ``s3`` backend.
OBJECT = Wording("WAL object", "key")


def check_file_header(
    data: bytes, magic: bytes, version: int, path: str, what: str, *, hint: str = ""
) -> int:
    """The seq in the file header that opens ``data``, once it is whole, ``magic`` and ``version``.

    Else ``Corrupted`` calls it ``what`` (``"WAL segment"``, ``"snapshot
    object"``), with ``hint`` appended where the header is damaged.
    """
    head = decode_file_header(data, magic)
    if isinstance(head, str):
        raise Corrupted(f"{what} header is damaged: {head}{hint}", path, 0)
    found, seq = head
    if found != version:
        raise Corrupted(f"unsupported {what} format version {found}", path, 8)
    return seq


class WalRecords:
    """The records of one WAL segment (or S3 object) held in memory, verified as they are read.

    Iterate it for ``(seq, payload, frame bytes)`` of each good record, from
    ``first`` on; a frame whose body does not start with the next seq raises
    ``Corrupted`` at that frame (``hint`` appended to the message). The frames
    are read from the end of the file header (which this does not check: see
    :func:`verify_wal`) to ``end`` (the end of ``data`` by default).

    Afterwards :attr:`next_seq` is the seq after the last good record,
    :attr:`offset` where the good records end and :attr:`stop` why they did;
    :meth:`finish` applies the torn-tail rule the caller states.
    """

    def __init__(
        self,
        data: bytes,
        first: int,
        path: str,
        wording: Wording = SEGMENT,
        *,
        hint: str = "",
        end: int | None = None,
    ) -> None:
        self._reader = FrameReader(data, FILE_HEADER_SIZE, end)
        self._path = path
        self._wording = wording
        self._hint = hint
        self.next_seq = first

    def __iter__(self) -> Iterator[tuple[int, memoryview, int]]:
        for offset, body in self._reader:
            expect = self.next_seq
            if len(body) < _SEQ.size:
                why = "WAL record is shorter than its sequence number"
                raise Corrupted(f"{why}{self._hint}", self._path, offset)
            (seq,) = _SEQ.unpack_from(body)
            if seq != expect:
                why = f"WAL record has seq {seq} where {expect} was expected"
                raise Corrupted(f"{why}{self._hint}", self._path, offset)
            self.next_seq = expect + 1
            yield expect, body[_SEQ.size :], HEADER_SIZE + len(body)

    @property
    def offset(self) -> int:
        return self._reader.offset

    @property
    def stop(self) -> Stop | None:
        return self._reader.stop

    def finish(self, torn_ok: bool = False) -> bool:
        """After iterating: whether the records end in a torn tail, which ``torn_ok`` accepts.

        Raises ``Corrupted`` unless the frames ran to the end or, with
        ``torn_ok``, into a torn tail (see :mod:`.framing`).
        """
        if self.stop is Stop.TORN and torn_ok:
            return True
        if self.stop is not Stop.END:
            why = f"{self._wording.kind} is damaged: {self._reader.reason}{self._hint}"
            raise Corrupted(why, self._path, self.offset)
        return False


def verify_wal(
    data: bytes, first: int, path: str, wording: Wording = SEGMENT, *, hint: str = ""
) -> WalRecords:
    """Check the header of a whole WAL segment (or S3 object); iterate the result for its records.

    ``first`` is the seq its name (or key) says it starts at; ``path`` names it
    in ``Corrupted``, worded by ``wording``, with ``hint`` appended to the
    messages about damage (not to those about the version or the first seq).
    The caller states its torn-tail rule with :meth:`WalRecords.finish`.
    """
    seq = check_file_header(data, MAGIC, VERSION, path, wording.kind, hint=hint)
    if seq != first:
        why = f"{wording.kind} header says first seq {seq}, its {wording.named_by} {first}"
        raise Corrupted(why, path, 12)
    return WalRecords(data, first, path, wording, hint=hint)


def _check_contiguous(segments: list[Segment], after: int) -> None:
    if segments and segments[0].first_seq > after + 1:
        first = segments[0]
        raise Corrupted(
            f"records {after + 1}..{first.first_seq - 1} are in neither a snapshot nor the WAL",
            first.path,
            0,
        )
    for prev, seg in pairwise(segments):
        if seg.first_seq < prev.next_seq:
            raise Corrupted(
                f"WAL segment starts at seq {seg.first_seq} but {_display(prev.path)} "
                f"already holds records up to {prev.next_seq - 1}",
                seg.path,
                0,
            )
        # A gap is legitimate only right after a snapshot that covers it (the
        # writer restarts after a snapshot that was ahead of the log).
        if seg.first_seq > prev.next_seq and seg.first_seq - 1 > after:
            raise Corrupted(
                f"records {prev.next_seq}..{seg.first_seq - 1} are missing between "
                f"{_display(prev.path)} and this segment",
                seg.path,
                0,
            )


def read_records(
    files: FileLayer, segments: list[Segment], after: int
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(seq, payload)`` for records after ``after``, reading a segment at a time."""
    for seg in segments:
        if seg.next_seq - 1 <= after:
            continue
        # Recovery verified the header and the records up to ``seg.size``.
        records = WalRecords(files.read_bytes(seg.path), seg.first_seq, seg.path, end=seg.size)
        for seq, payload, _ in records:
            if seq > after:
                yield seq, bytes(payload)
        if records.stop is not Stop.END or records.next_seq != seg.next_seq:
            raise Corrupted("WAL segment changed while it was read", seg.path, records.offset)


@dataclass(slots=True)
class _Group:
    """Frames for records ``[first, next)``, to go to a segment that continues at ``first``."""

    first: int
    next: int
    data: bytearray


class WalWriter:
    """Appends records to the newest segment; group commit; rolls segments.

    ``append`` only touches an in-memory buffer under a small lock, so it can
    run while another thread is inside ``flush`` writing and syncing the
    previous group. ``flush`` calls are serialized here as well. Errors are
    raised as ``OSError``; the backend decides what they mean.
    """

    def __init__(
        self,
        files: FileLayer,
        folder: str,
        segment_bytes: int,
        segments: list[Segment],
        *,
        next_seq: int,
        floor: int,
    ) -> None:
        self._files = files
        self._folder = folder
        self._segment_bytes = segment_bytes
        self._buf_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._seg_lock = threading.Lock()
        self._groups: list[_Group] = []
        self._next = next_seq
        #: Appends may skip ahead to just after this seq: a snapshot covers the gap.
        self._floor = floor
        self._segments = [(s.first_seq, s.path) for s in segments]
        self._current: AppendFile | None = None
        self._current_first = self._current_next = 0
        if segments:
            self._current = files.open_append(segments[-1].path)
            self._current_first = segments[-1].first_seq
            self._current_next = segments[-1].next_seq
            # What recovery read may sit only in the page cache of a crashed process.
            self._current.sync()
        self._synced = next_seq - 1
        #: Bytes handed to the OS by this writer (headers excluded).
        self.bytes_written = 0

    def append(self, seq: int, payload: bytes) -> None:
        """Buffer one record; raises ``InvalidArgument`` if ``seq`` breaks the sequence."""
        length = _SEQ.size + len(payload)
        if length > MAX_BODY:
            raise TooLarge(f"WAL record of {length} bytes exceeds the limit of {MAX_BODY}")
        seq_bytes = _SEQ.pack(seq)
        header = encode_frame_header(length, checksum(payload, checksum(seq_bytes)))
        with self._buf_lock:
            if seq != self._next:
                if seq < self._next or seq - 1 > self._floor:
                    raise InvalidArgument(f"append of seq {seq}, but the next seq is {self._next}")
                self._groups.append(_Group(seq, seq, bytearray()))
            elif not self._groups:
                self._groups.append(_Group(seq, seq, bytearray()))
            group = self._groups[-1]
            group.data += header
            group.data += seq_bytes
            group.data += payload
            group.next = seq + 1
            self._next = seq + 1

    def advance_floor(self, last_seq: int) -> None:
        """A snapshot up to ``last_seq`` is durable: appends may continue after it."""
        with self._buf_lock:
            self._floor = max(self._floor, last_seq)

    def flush(self, sync: bool) -> int:
        """Write every buffered record (one write per group), fsync if ``sync``; roll."""
        with self._flush_lock:
            with self._buf_lock:
                groups, self._groups = self._groups, []
                last = self._next - 1
            for group in groups:
                if self._current is None or group.first != self._current_next:
                    self._roll(group.first)
                assert self._current is not None
                self._current.write(group.data)
                self._current_next = group.next
                self.bytes_written += len(group.data)
            if sync and self._synced < last:
                if self._current is not None:
                    self._current.sync()
                self._synced = last
            current = self._current
            if (
                current is not None
                and current.size >= self._segment_bytes
                and self._current_next > self._current_first  # never roll an empty segment
            ):
                self._roll(self._current_next)
            return last

    def _roll(self, first: int) -> None:
        """Start segment ``first``: sync the old one, create, header, sync, fsync dir."""
        old = self._current
        if old is not None:
            if self._synced < self._current_next - 1:
                old.sync()  # only the newest segment may ever end torn
            old.close()
            self._current = None
        path = os.path.join(self._folder, segment_name(first))
        new = self._files.create_exclusive(path)
        try:
            new.write(encode_file_header(MAGIC, VERSION, first))
            new.sync()
            self._files.fsync_dir(self._folder)
        except BaseException:
            new.close()
            raise
        with self._seg_lock:
            self._segments.append((first, path))
        self._current = new
        self._current_first = self._current_next = first
        self._synced = max(self._synced, first - 1)

    def segment_paths(self) -> list[str]:
        """The live segments, oldest first."""
        with self._seg_lock:
            return [path for _, path in self._segments]

    def remove_through(self, last_seq: int) -> list[str]:
        """Delete segments whose records are all ``<= last_seq``; never the newest."""
        with self._seg_lock:
            doomed = [
                path
                for (_, path), (next_first, _) in pairwise(self._segments)
                if next_first - 1 <= last_seq
            ]
            del self._segments[: len(doomed)]
        for path in doomed:  # oldest first: a crash leaves a contiguous suffix
            self._files.remove(path)
        if doomed:
            self._files.fsync_dir(self._folder)
        return doomed

    def close(self) -> None:
        """Close the open segment (does not flush)."""
        with self._flush_lock:
            if self._current is not None:
                self._current.close()
                self._current = None
