"""The ``s3`` backend: WAL and snapshots as objects in an S3 bucket (boto3).

Like Materialize persist's Blob/WAL split: the log is written as immutable
objects, one per group commit, and snapshots as whole objects; a bounded LRU
cache keeps recently read objects. Needs the ``s3`` extra
(``pip install 'amber-db[s3]'``); credentials come from boto3's usual chain
(``AWS_ACCESS_KEY_ID`` …, a profile, an instance role).

URL: ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&region=us-east-1``
with the options ``endpoint_url`` (an S3-compatible service; path-style
addressing is then used), ``region``, ``lease_seconds`` (30) and
``cache_bytes`` (64 MiB).

Objects (format version 1)
==========================
Under ``{prefix}/``::

    FORMAT                     b"amber-s3 1\\n", written when the prefix is first used
    lock                       the writer lease (JSON), see below
    wal/{first_seq:020d}       one object per flush: a WAL segment (magic AMBRWAL)
    snapshots/{last_seq:020d}  one object per snapshot (magic AMBRSNP)

Both object kinds use the ``log`` backend's file formats
(:mod:`amber.persistence.log`): a 24-byte file header, then CRC-32C frames —
a WAL object holds the records ``first_seq, first_seq + 1, …`` of one group;
a snapshot object its chunks and an end frame with their count. A PUT is
atomic and durable when it returns, so there is no torn tail: any bad
header, frame, seq or count is ``Corrupted`` naming the object key and
offset.

Writing: ``flush`` — in every durability mode, since an un-PUT record would
not even survive this process — PUTs the group as ``wal/{first_seq}`` with
``If-None-Match: *``: the key can be created once only, so two writers that
both think they own the prefix cannot both append after the same record; the
second one's PUT fails and its writes stop (``StorageFailed``). A snapshot is
encoded into a spooled temp file (a failing chunk source uploads nothing),
uploaded (multipart when large), then only the newest ``keep_snapshots`` are
kept and every WAL object whose records are all covered by the oldest kept
snapshot is deleted (vacuum).

Writer lease
------------
``lock`` holds ``{"owner", "host", "pid", "expires_at", "lease_seconds"}``.
Opening creates it with ``If-None-Match: *``; if it exists and its
``expires_at`` (wall clock) has passed, it is taken over with ``If-Match``
on its ETag (so of two racing openers one wins), else ``Locked`` names the
holder. The holder renews it every ``lease_seconds / 3`` with ``If-Match``
and deletes it (``If-Match``) at close. Writes are refused once the holder's
own renewal is older than ``3/4`` of the lease (it may have been taken over),
and a renewal that finds another owner stops writes for good.

Honest limits: exclusion by lease assumes clocks within a fraction of the
lease and no pause (GC, suspended VM) longer than the lease between that
check and a PUT; the conditional WAL PUTs fence the log itself even then,
but a paused ex-holder could still upload a snapshot. After a writer is
killed, the next open waits for the lease to expire (``Locked`` until then).

Recovery: check ``FORMAT`` (a prefix with foreign objects and no
``FORMAT`` is refused), take the lease, read and verify the newest snapshot,
then read the WAL objects that may hold later records and check that the
records after the snapshot start right after it and run on without gaps.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import botocore.config
import botocore.exceptions

from ..config import Config
from ..errors import AmberError, Corrupted, InvalidArgument, Locked, StorageFailed, TooLarge
from .base import Recovered, SnapshotData
from .buffered import BufferedBackend
from .framing import (
    FILE_HEADER_SIZE,
    HEADER_SIZE,
    MAX_BODY,
    FrameReader,
    Stop,
    encode_file_header,
    encode_frame,
)
from .wal import MAGIC as WAL_MAGIC
from .wal import OBJECT, check_file_header, verify_wal
from .wal import VERSION as WAL_VERSION

__all__ = ["ObjectCache", "S3Backend", "S3Location", "make_client", "parse_s3_url"]

log = logging.getLogger(__name__)

FORMAT = b"amber-s3 1\n"
SNAP_MAGIC = b"AMBRSNP\0"
VERSION = 1
_KEY = re.compile(r"^(\d{20})$")
_CHUNK = b"\x01"
_END = b"\x02"
_OPTIONS = {"endpoint_url", "region", "lease_seconds", "cache_bytes"}


class S3Location:
    """A parsed ``s3://bucket/prefix?…`` URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidArgument(f"{url!r} is not an s3://bucket/prefix URL")
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = set(options) - _OPTIONS
        if unknown:
            raise InvalidArgument(
                f"unknown s3 URL options {sorted(unknown)} (use {', '.join(sorted(_OPTIONS))})"
            )
        self.bucket = parts.netloc
        path = parts.path.strip("/")
        self.prefix = path + "/" if path else ""
        self.endpoint_url = options.get("endpoint_url") or None
        self.region = options.get("region") or None
        try:
            self.lease_seconds = float(options.get("lease_seconds", "30"))
            self.cache_bytes = int(options.get("cache_bytes", str(64 * 1024 * 1024)))
        except ValueError as exc:
            raise InvalidArgument(f"bad number in s3 URL {url!r}: {exc}") from None
        if not 0.1 <= self.lease_seconds <= 3600 or self.cache_bytes < 0:
            raise InvalidArgument("lease_seconds must be 0.1..3600 and cache_bytes >= 0")

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def key(self, name: str) -> str:
        return self.prefix + name


def parse_s3_url(url: str) -> S3Location:
    """The bucket, prefix and options of an ``s3://`` URL."""
    return S3Location(url)


def make_client(location: S3Location) -> Any:
    """A boto3 S3 client for ``location`` (path-style addressing for a custom endpoint)."""
    config = botocore.config.Config(
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if location.endpoint_url else None,
        connect_timeout=10,
        read_timeout=60,
    )
    session = boto3.session.Session()
    return session.client(
        "s3", endpoint_url=location.endpoint_url, region_name=location.region, config=config
    )


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _missing(exc: BaseException) -> bool:
    return _error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _precondition(exc: BaseException) -> bool:
    return _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict")


class ObjectCache:
    """A bounded LRU of object bodies by key; thread-safe. Objects are immutable here."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = data
            self._size += len(data)
            while self._size > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)

    @property
    def size(self) -> int:
        return self._size


class WriterLease:
    """The ``lock`` object: acquire, renew in the background, check, release."""

    def __init__(self, client: Any, bucket: str, key: str, seconds: float, where: str) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self.seconds = seconds
        self._where = where
        self.owner = uuid.uuid4().hex
        self._etag: str | None = None
        self._valid_until = 0.0  # time.monotonic() deadline of our last renewal
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self, started: float) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "expires_at": started + self.seconds,
                "lease_seconds": self.seconds,
            }
        ).encode()

    def _put(self, **condition: str) -> None:
        wall, mono = time.time(), time.monotonic()
        reply = self._client.put_object(
            Bucket=self._bucket, Key=self._key, Body=self._body(wall), **condition
        )
        self._etag = reply["ETag"]
        self._valid_until = mono + self.seconds

    def acquire(self) -> str | None:
        """Take the lease; returns a note when an expired one was taken over."""
        for _ in range(3):
            try:
                self._put(IfNoneMatch="*")
                self._start()
                return None
            except botocore.exceptions.ClientError as exc:
                if not _precondition(exc):
                    raise
            try:
                reply = self._client.get_object(Bucket=self._bucket, Key=self._key)
            except botocore.exceptions.ClientError as exc:
                if _missing(exc):
                    continue  # released meanwhile: try to create it again
                raise
            etag = reply["ETag"]
            try:
                holder = json.loads(reply["Body"].read())
                expires = float(holder["expires_at"])
                who = f"host {holder.get('host')} pid {holder.get('pid')}"
            except (ValueError, KeyError, TypeError):
                holder, expires, who = {}, 0.0, "an unreadable lease"
            if expires > time.time():
                until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(expires))
                raise Locked(
                    f"{self._where} is in use by another writer ({who}, lease until "
                    f"{until}); close it there first, or if that process is gone, open "
                    "again once the lease has expired"
                )
            try:
                self._put(IfMatch=etag)
            except botocore.exceptions.ClientError as exc:
                if _precondition(exc):
                    raise Locked(
                        f"{self._where}: another writer took over the expired lease first"
                    ) from None
                raise
            self._start()
            return f"took over the expired writer lease of {who}"
        raise Locked(f"{self._where}: the writer lease keeps changing hands; try again")

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="amber-s3-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                assert self._etag is not None
                self._put(IfMatch=self._etag)
            except botocore.exceptions.ClientError as exc:
                if _precondition(exc) or _missing(exc):
                    self._lost = "the writer lease was taken over by another writer"
                    log.error("%s: %s; writes are stopped", self._where, self._lost)
                    return
                log.warning("%s: renewing the writer lease failed: %s", self._where, exc)
            except botocore.exceptions.BotoCoreError as exc:
                log.warning("%s: renewing the writer lease failed: %s", self._where, exc)

    def check(self) -> None:
        """Refuse to write unless the lease is surely still ours."""
        if self._lost is not None:
            raise StorageFailed(f"{self._where}: {self._lost}")
        if time.monotonic() > self._valid_until - self.seconds / 4:
            raise StorageFailed(
                f"{self._where}: the writer lease could not be renewed in time; "
                "another writer may take over"
            )

    def release(self, clean: bool) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if clean and self._etag is not None and self._lost is None:
            with contextlib.suppress(botocore.exceptions.ClientError):
                self._client.delete_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag)
        self._etag = None


def _read_wal_object(data: bytes, key: str, first: int) -> Iterator[tuple[int, memoryview, int]]:
    """Yield ``(seq, payload, frame bytes)`` of a verified WAL object.

    A PUT object is whole: unlike the newest local segment it may not end
    torn, and it holds at least one record.
    """
    records = verify_wal(data, first, key, OBJECT)
    yield from records
    records.finish(torn_ok=False)
    if records.next_seq == first:
        raise Corrupted("WAL object holds no record", key, FILE_HEADER_SIZE)


def _read_snapshot_object(data: bytes, key: str, last_seq: int) -> list[memoryview]:
    """The chunks of a verified snapshot object."""
    seq = check_file_header(data, SNAP_MAGIC, VERSION, key, "snapshot object")
    if seq != last_seq:
        raise Corrupted(f"snapshot header says seq {seq}, its key {last_seq}", key, 12)
    reader = FrameReader(data, FILE_HEADER_SIZE)
    chunks: list[memoryview] = []
    for offset, body in reader:
        kind = bytes(body[:1])
        if kind == _CHUNK:
            chunks.append(body[1:])
            continue
        if kind == _END and len(body) == 9:
            count = int.from_bytes(body[1:], "little")
            end = offset + HEADER_SIZE + len(body)
            if count != len(chunks):
                raise Corrupted(
                    f"snapshot end frame counts {count} chunks but {len(chunks)} were read",
                    key,
                    offset,
                )
            if end != len(data):
                raise Corrupted("data after the snapshot's end frame", key, end)
            return chunks
        raise Corrupted(f"unknown snapshot frame kind {kind!r}", key, offset)
    if reader.stop is Stop.END:
        raise Corrupted("snapshot ends without its end frame", key, reader.offset)
    raise Corrupted(f"snapshot object is damaged: {reader.reason}", key, reader.offset)


class S3Backend(BufferedBackend):
    """WAL objects and snapshot objects under one prefix; see the module doc."""

    name = "s3"

    def __init__(
        self,
        location: S3Location | str,
        config: Config | None = None,
        *,
        client: Any = None,
        cache: ObjectCache | None = None,
    ) -> None:
        self.location = location if isinstance(location, S3Location) else S3Location(location)
        super().__init__(str(self.location), config)
        self._client = client
        self._own_client = client is None  # ours to close
        self.cache = cache if cache is not None else ObjectCache(self.location.cache_bytes)
        self._lease: WriterLease | None = None
        self._segments: list[int] = []  # first seq of each WAL object, ascending
        self._segments_lock = threading.Lock()
        self._log_last = 0
        self._snapshots: list[int] = []

    @classmethod
    def from_url(cls, url: str, config: Config | None = None) -> S3Backend:
        return cls(S3Location(url), config)

    # -- object helpers ----------------------------------------------------------------

    def _wal_key(self, first: int) -> str:
        return self.location.key(f"wal/{first:020d}")

    def _snap_key(self, last_seq: int) -> str:
        return self.location.key(f"snapshots/{last_seq:020d}")

    def _list(self, sub: str) -> list[str]:
        """Keys under ``{prefix}{sub}``, ascending."""
        keys: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.key(sub)):
            keys.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(keys)

    def _numbered(self, sub: str) -> list[int]:
        start = len(self.location.key(sub))
        found = []
        for key in self._list(sub):
            match = _KEY.match(key[start:])
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def _get(self, key: str) -> bytes:
        data = self.cache.get(key)
        if data is None:
            reply = self._client.get_object(Bucket=self.location.bucket, Key=key)
            data = bytes(reply["Body"].read())
            self.cache.put(key, data)
        return data

    def _delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            part = keys[i : i + 1000]
            reply = self._client.delete_objects(
                Bucket=self.location.bucket,
                Delete={"Objects": [{"Key": k} for k in part], "Quiet": True},
            )
            for key in part:
                self.cache.discard(key)
            errors = reply.get("Errors") or []
            if errors:
                raise botocore.exceptions.ClientError(
                    {"Error": errors[0]}, f"DeleteObjects {errors[0].get('Key')}"
                )

    # -- recovery ------------------------------------------------------------------------

    def _open(self) -> tuple[Recovered, int, int | None]:
        loc = self.location
        if self._client is None:
            self._client = make_client(loc)
        try:
            self._client.head_bucket(Bucket=loc.bucket)
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                raise InvalidArgument(f"bucket {loc.bucket!r} does not exist") from None
            raise
        has_format = self._check_format()
        notes: list[str] = []
        self._lease = WriterLease(
            self._client, loc.bucket, loc.key("lock"), loc.lease_seconds, str(loc)
        )
        note = self._lease.acquire()
        if note is not None:
            notes.append(note)
        if not has_format:
            self._client.put_object(Bucket=loc.bucket, Key=loc.key("FORMAT"), Body=FORMAT)
        self._snapshots = self._numbered("snapshots/")
        snapshot: SnapshotData | None = None
        after = 0
        if self._snapshots:
            after = self._snapshots[-1]
            key = self._snap_key(after)
            chunks = _read_snapshot_object(self._get(key), key, after)  # verify now
            snapshot = SnapshotData(after, self._snapshot_chunks(after, len(chunks)), key)
            del chunks
        self._segments = self._numbered("wal/")
        needed = self._needed(after)
        expect = None
        size = 0
        for first in needed:
            key = self._wal_key(first)
            if expect is None:
                if first > after + 1:
                    raise Corrupted(
                        f"records {after + 1}..{first - 1} are in neither a snapshot nor "
                        "the WAL objects",
                        key,
                    )
            elif first != expect and not (first <= after + 1 and expect <= after + 1):
                raise Corrupted(f"WAL objects skip from seq {expect - 1} to {first}", key)
            for seq, _, frame_bytes in _read_wal_object(self._get(key), key, first):
                if seq > after:
                    size += frame_bytes
                expect = seq + 1
        self._log_last = expect - 1 if expect is not None else 0
        self._bytes_total = size
        records = self._records(needed, after)
        return Recovered(snapshot, records, notes), self._log_last, (after if snapshot else None)

    def _check_format(self) -> bool:
        loc = self.location
        try:
            data = self._get(loc.key("FORMAT"))
        except botocore.exceptions.ClientError as exc:
            if not _missing(exc):
                raise
        else:
            match = re.fullmatch(rb"amber-s3 (\d+)\n", data)
            if match is None:
                why = "the FORMAT object is not an Amber format marker"
                raise Corrupted(why, loc.key("FORMAT"))
            if int(match.group(1)) > VERSION:
                raise InvalidArgument(
                    f"{loc} has S3 format {int(match.group(1))}, newer than the {VERSION} "
                    "this Amber reads: open it with a newer Amber"
                )
            return True
        keys = self._list("")
        ours = [k for k in keys if k[len(loc.prefix) :].startswith(("wal/", "snapshots/"))]
        foreign = [k for k in keys if k not in ours and k != loc.key("lock")]
        if ours:
            raise Corrupted("the FORMAT object is missing but the prefix holds data", str(loc))
        if foreign:
            raise InvalidArgument(
                f"{loc} is not an Amber prefix (no FORMAT object, but it holds "
                f"{', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}): "
                "pass a new or empty prefix"
            )
        return False

    def _needed(self, after: int) -> list[int]:
        """The WAL objects that may hold records after ``after``."""
        segs = self._segments
        return [f for i, f in enumerate(segs) if i == len(segs) - 1 or segs[i + 1] - 1 > after]

    def _snapshot_chunks(self, last_seq: int, count: int) -> Iterator[bytes]:
        key = self._snap_key(last_seq)
        chunks = _read_snapshot_object(self._get(key), key, last_seq)
        if len(chunks) != count:
            raise Corrupted("snapshot object changed while it was read", key)
        for chunk in chunks:
            yield bytes(chunk)

    def _records(self, needed: list[int], after: int) -> Iterator[tuple[int, bytes]]:
        for first in needed:
            key = self._wal_key(first)
            for seq, payload, _ in _read_wal_object(self._get(key), key, first):
                if seq > after:
                    yield seq, bytes(payload)

    # -- writing -------------------------------------------------------------------------

    def _write_group(self, records: list[tuple[int, bytes]], sync: bool) -> int:
        first = records[0][0]
        body = bytearray(encode_file_header(WAL_MAGIC, WAL_VERSION, first))
        for seq, payload in records:
            body += encode_frame(seq.to_bytes(8, "little") + payload)
        key = self._wal_key(first)
        assert self._lease is not None
        self._lease.check()
        try:
            self._client.put_object(
                Bucket=self.location.bucket, Key=key, Body=bytes(body), IfNoneMatch="*"
            )
        except botocore.exceptions.ClientError as exc:
            if _precondition(exc):
                raise StorageFailed(
                    f"WAL object {key} already exists: another writer appended to "
                    f"{self.location}; this one's lease is lost, writes are stopped"
                ) from exc
            raise
        with self._segments_lock:
            self._segments.append(first)
            self._log_last = records[-1][0]
        return len(body)

    def _sync_group(self) -> None:
        """Every PUT is durable when it returns: nothing is ever left to sync."""

    def _store_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as spool:
            spool.write(encode_file_header(SNAP_MAGIC, VERSION, last_seq))
            count = 0
            for chunk in chunks:
                if len(chunk) + 1 > MAX_BODY:
                    raise TooLarge(f"snapshot chunk of {len(chunk)} bytes exceeds {MAX_BODY - 1}")
                spool.write(encode_frame(_CHUNK + chunk))
                count += 1
            spool.write(encode_frame(_END + count.to_bytes(8, "little")))
            spool.seek(0)
            assert self._lease is not None
            self._lease.check()
            key = self._snap_key(last_seq)
            self.cache.discard(key)
            self._client.upload_fileobj(spool, self.location.bucket, key)
        try:
            self._vacuum(last_seq)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            # The snapshot is stored; what was not deleted now goes at the next one.
            log.warning("%s: vacuum after snapshot %d failed: %s", self.location, last_seq, exc)

    def _vacuum(self, last_seq: int) -> None:
        """Keep the newest ``keep_snapshots``; delete WAL objects the oldest kept covers."""
        snaps = sorted({*self._snapshots, last_seq})
        keep = self._config.keep_snapshots
        doomed, kept = snaps[:-keep], snaps[-keep:]
        oldest = kept[0]
        with self._segments_lock:
            segs = list(self._segments)
            log_last = self._log_last
        covered = []
        for i, first in enumerate(segs):
            last = segs[i + 1] - 1 if i + 1 < len(segs) else log_last
            if last <= oldest:
                covered.append(first)
        self._snapshots = snaps  # until the deletes went through
        self._delete([self._snap_key(s) for s in doomed])
        self._snapshots = kept
        self._delete([self._wal_key(f) for f in covered])
        gone = set(covered)
        with self._segments_lock:
            self._segments = [f for f in self._segments if f not in gone]

    def snapshot_seqs(self) -> list[int]:
        """The ``last_seq`` of every kept snapshot, oldest first."""
        return list(self._snapshots)

    def _translate(self, exc: Exception, what: str) -> AmberError | None:
        if isinstance(exc, botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError):
            return StorageFailed(f"{what} {self.location} failed: {exc}")
        return None

    def _release(self, clean: bool) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            try:
                lease.release(clean)
            except botocore.exceptions.BotoCoreError as exc:
                log.warning("%s: releasing the writer lease failed: %s", self.location, exc)
        client = self._client
        if self._own_client and client is not None:
            self._client = None
            client.close()  # its pooled sockets, now rather than at garbage collection
