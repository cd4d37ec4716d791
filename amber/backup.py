"""Backup and restore (physical, revision-exact) and JSON-lines export and import (logical).

**Backup** writes the state of a database *at one revision* to a file or an
``s3://bucket/key`` object, while it keeps taking writes: writers are held
only for the store's capture (a shallow copy of each table's dict, the same
one ``Database.snapshot`` takes); encoding and I/O run off the lock.

The backup format is the ``log`` backend's snapshot file format
(:mod:`amber.persistence.log`: a 24-byte header with magic ``AMBRSNP`` and the
log position, one CRC-32C frame per chunk, an end frame with the chunk
count) holding the store's snapshot chunks, whose first chunk carries the
revision. A file appears only by rename after an fsync; an object only once
its upload completed.

**Restore** verifies a backup whole (every frame, then the chunks as a
store image) and writes it as the first snapshot of an *empty* target of
any backend, so opening the target gives the same tables, keys, values,
``create_revision`` / ``mod_revision`` / ``version``, TTLs and the same
``db.revision``; new writes continue after it. Watch history is not part of
a backup: watches on the restored database start at its revision.

**Export** writes one JSON object per line, consistent at one revision::

    {"table": "accounts", "key": "42", "value": {...}, "create_revision": 3,
     "mod_revision": 9, "version": 4, "expires_at_ms": null}

**Import** reads such lines and puts them, ``batch`` keys per transaction
(one revision each): a logical copy, so revisions are new; a key whose
``expires_at_ms`` has passed is skipped, one with a later one keeps the
remaining time to live. Empty tables are not exported.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import msgpack

from .config import Config
from .database import Database, Put
from .database import open as open_database
from .errors import AmberError, Corrupted, InvalidArgument
from .persistence import OsFiles, open_backend
from .persistence.framing import FILE_HEADER_SIZE, decode_file_header
from .persistence.snapshot import MAGIC, read_chunks, write_snapshot_file
from .store.state import Store, StoreImage

__all__ = [
    "BackupPolicy",
    "BackupInfo",
    "Progress",
    "backup",
    "export_jsonl",
    "import_jsonl",
    "read_backup_info",
    "restore",
]

#: ``progress(done, total)`` in keys; called from the working thread.
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a backup holds (or a restore wrote)."""

    revision: int
    #: The log position the state is at (the snapshot's ``last_seq``).
    seq: int
    tables: int
    keys: int
    #: Size of the backup file or object.
    bytes: int
    location: str


# -- sources and destinations ----------------------------------------------------------------


@contextlib.contextmanager
def _database(
    source: Database | str | os.PathLike[str], config: Config | None, *, existing: bool = False
) -> Iterator[Database]:
    """The given open database, or ``source`` opened (and closed after) without jobs.

    ``existing``: a data folder that is not there is refused (reading from a
    mistyped path would create an empty database and copy nothing from it).
    """
    if isinstance(source, Database):
        yield source
        return
    if existing and "://" not in os.fspath(source) and not os.path.isdir(source):
        raise InvalidArgument(f"no data folder at {os.fspath(source)}")
    db = open_database(source, config=config, jobs=False)
    try:
        yield db
    finally:
        db.close()


def _capture(db: Database) -> StoreImage:
    """A consistent image of the whole store at one revision (writers wait microseconds)."""
    return db.capture()


def _is_s3(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and location.startswith("s3://")


def _s3_object(url: str) -> tuple[Any, str, str]:
    """``(client, bucket, key)`` for an ``s3://bucket/key?endpoint_url=…`` URL."""
    try:
        from .persistence.s3 import S3Location, make_client  # noqa: PLC0415 (boto3 is optional)
    except ImportError as exc:
        raise InvalidArgument(f"s3 URLs need boto3 ({exc}): pip install 'amber-db[s3]'") from exc
    location = S3Location(url)
    key = location.prefix.rstrip("/")
    if not key:
        raise InvalidArgument(f"{url!r} names a bucket but no object key")
    return make_client(location), location.bucket, key


def _count_keys(chunk: bytes) -> int:
    """How many keys a store snapshot chunk holds (reads only its first fields)."""
    unpacker = msgpack.Unpacker()
    unpacker.feed(chunk)
    try:
        if unpacker.read_array_header() < 5 or unpacker.unpack() != "t":
            return 0
        unpacker.skip()  # table name
        return int(unpacker.read_array_header())
    except (ValueError, msgpack.ExtraData, msgpack.OutOfData, msgpack.UnpackException):
        return 0


def _counted(chunks: Iterator[bytes], total: int, progress: Progress | None) -> Iterator[bytes]:
    done = 0
    if progress is not None:
        progress(0, total)
    for chunk in chunks:
        yield chunk
        if progress is not None:
            done += _count_keys(chunk)
            progress(min(done, total), total)
    if progress is not None:
        progress(total, total)


# -- where a server may write backups -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupPolicy:
    """Where a client of a server (``AMBER.BACKUP``) may have backups written.

    A network client must not choose a file path on the server's host: that
    is the classic Redis ``CONFIG SET dir`` attack (a value landing in a cron
    file or ``authorized_keys``). So a client names a backup **inside**
    ``folder`` (no absolute path, no ``..``, no symlink out, no existing file
    unless it says ``replace``), and an ``s3://`` destination only under
    ``s3_prefix``. ``None`` refuses that kind of destination.
    """

    folder: str | None = None
    s3_prefix: str | None = None

    def resolve(self, dest: str, *, replace: bool = False) -> str:
        """The checked destination for ``dest``, or ``InvalidArgument`` saying why not."""
        if "\x00" in dest or not dest:
            raise InvalidArgument("name a backup file")
        if _is_s3(dest):
            prefix = self.s3_prefix
            if not prefix:
                raise InvalidArgument("backups to s3:// are not enabled on this server")
            if not dest.startswith(prefix) or ".." in dest[len(prefix) :].split("/"):
                raise InvalidArgument(f"s3 backups must go under {prefix}")
            return dest
        if self.folder is None:
            raise InvalidArgument("backups to files are not enabled on this server")
        parts = dest.replace("\\", "/").split("/")
        if os.path.isabs(dest) or ".." in parts or "://" in dest:
            raise InvalidArgument(
                "a backup is named relative to the server's backup folder "
                "(no absolute path, no '..')"
            )
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        root = os.path.realpath(self.folder)
        target = os.path.join(root, os.path.normpath(dest))
        if os.path.realpath(target) != target or not target.startswith(root + os.sep):
            raise InvalidArgument("a backup must stay inside the backup folder (no symlinks)")
        if os.path.lexists(target) and not replace:
            raise InvalidArgument(f"backup {dest} exists; add REPLACE to overwrite it")
        return target


# -- backup and restore ----------------------------------------------------------------------


def backup(
    source: Database | str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
    config: Config | None = None,
) -> BackupInfo:
    """Write the state of ``source`` at one revision to the file or ``s3://`` object ``dest``.

    ``source`` is an open ``Database`` (online: it keeps serving reads and
    writes) or a folder/URL that is opened for the backup (``Locked`` if
    another process has it open). ``dest`` is replaced atomically; on any
    error it is unchanged. Returns what was written.
    """
    with _database(source, config, existing=True) as db:
        image = _capture(db)
    keys = sum(len(rows) for _, rows in image.tables)
    chunks = _counted(Store.image_chunks(image, meta=False), keys, progress)
    if _is_s3(dest):
        client, bucket, key = _s3_object(str(dest))
        with tempfile.TemporaryDirectory(prefix="amber-backup-") as tmp:
            size = write_snapshot_file(OsFiles(), tmp, image.seq, chunks)
            path = os.path.join(tmp, os.listdir(tmp)[0])
            try:
                client.upload_file(path, bucket, key)
            except Exception as exc:
                raise AmberError(f"uploading the backup to {dest} failed: {exc}") from exc
            finally:
                client.close()
        location = f"s3://{bucket}/{key}"
    else:
        target = os.path.abspath(os.fspath(dest))
        folder = os.path.dirname(target)
        if os.path.isdir(target):
            raise InvalidArgument(f"backup destination {target} is a folder: name a file")
        if not os.path.isdir(folder):
            raise InvalidArgument(f"no folder {folder} for the backup file")
        files = OsFiles()
        tmp = tempfile.mkdtemp(prefix=".amber-backup-", dir=folder)
        try:
            size = write_snapshot_file(files, tmp, image.seq, chunks)
            os.replace(os.path.join(tmp, os.listdir(tmp)[0]), target)
            files.fsync_dir(folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        location = target
    return BackupInfo(image.revision, image.seq, len(image.tables), keys, size, location)


@contextlib.contextmanager
def _backup_file(src: str | os.PathLike[str]) -> Iterator[str]:
    """A local path holding the backup ``src`` (downloaded first when it is on S3)."""
    if not _is_s3(src):
        path = os.path.abspath(os.fspath(src))
        if not os.path.isfile(path):
            raise InvalidArgument(f"no backup file at {path}")
        yield path
        return
    client, bucket, key = _s3_object(str(src))
    with tempfile.TemporaryDirectory(prefix="amber-restore-") as tmp:
        path = os.path.join(tmp, "backup")
        try:
            client.download_file(bucket, key, path)
        except Exception as exc:
            raise InvalidArgument(f"could not read the backup {src}: {exc}") from exc
        finally:
            client.close()
        yield path


def _read_backup(path: str, name: str, config: Config) -> Store:
    """The backup at ``path`` loaded into a scratch store (verifying every frame and chunk)."""
    with open(path, "rb") as f:
        head = decode_file_header(f.read(FILE_HEADER_SIZE), MAGIC)
    if isinstance(head, str):
        raise Corrupted(f"not an Amber backup: {head}", name, 0)
    _, seq = head
    store = Store(config.limits)
    chunks = read_chunks(OsFiles(), path, seq)
    try:
        store.load_image(chunks, seq, name)
    except Corrupted as exc:
        raise Corrupted(str(exc).replace(path, name), name, exc.offset) from None
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise Corrupted(f"backup chunks are not a store image: {exc!r}", name) from exc
    return store


def read_backup_info(src: str | os.PathLike[str]) -> BackupInfo:
    """Verify a backup whole and say what it holds, without restoring it."""
    with _backup_file(src) as path:
        store = _read_backup(path, str(src), Config())
        size = os.path.getsize(path)
    image = store.capture()
    keys = sum(len(rows) for _, rows in image.tables)
    return BackupInfo(image.revision, image.seq, len(image.tables), keys, size, str(src))


def restore(
    src: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    config: Config | None = None,
    progress: Progress | None = None,
) -> BackupInfo:
    """Restore the backup ``src`` (file or ``s3://`` object) into the empty database ``target``.

    ``target`` is any backend's folder or URL; it must hold no data
    (``InvalidArgument`` otherwise, and nothing is changed). The backup is
    verified whole before anything is written; the restored state is one
    atomic snapshot, so a crash during restore leaves the target empty.
    """
    config = config or Config()
    with _backup_file(src) as path:
        store = _read_backup(path, str(src), config)
        size = os.path.getsize(path)
    image = store.capture()
    keys = sum(len(rows) for _, rows in image.tables)
    backend = open_backend(target, config)
    recovered = backend.recover()
    try:
        empty = recovered.snapshot is None and next(iter(recovered.records), None) is None
        if not empty:
            raise InvalidArgument(
                f"restore target {target} already holds data: restore into a new, empty one"
            )
        backend.write_snapshot(
            image.seq, _counted(Store.image_chunks(image, meta=False), keys, progress)
        )
    finally:
        backend.close()
    return BackupInfo(image.revision, image.seq, len(image.tables), keys, size, str(target))


# -- export and import (JSON lines) -----------------------------------------------------------


@contextlib.contextmanager
def _text(where: str | os.PathLike[str] | IO[str], mode: str) -> Iterator[IO[str]]:
    """An open text stream: ``where`` itself, or the file it names (fsynced after writing)."""
    if not isinstance(where, str | os.PathLike):
        yield where
        return
    with open(where, mode, encoding="utf-8") as f:
        yield f
        if mode == "w":
            f.flush()
            os.fsync(f.fileno())


def export_jsonl(
    source: Database | str | os.PathLike[str],
    out: str | os.PathLike[str] | IO[str],
    *,
    progress: Progress | None = None,
    config: Config | None = None,
) -> int:
    """Write every key of ``source`` at one revision as JSON lines; returns the key count."""
    with _database(source, config, existing=True) as db:
        image = _capture(db)
    total = sum(len(rows) for _, rows in image.tables)
    done = 0
    if progress is not None:
        progress(0, total)
    with _text(out, "w") as f:
        for table, rows in sorted(image.tables):
            for key in sorted(rows):
                value, create, mod, version, expires = rows[key]
                line = {
                    "table": table,
                    "key": key,
                    "value": value,
                    "create_revision": create,
                    "mod_revision": mod,
                    "version": version,
                    "expires_at_ms": expires,
                }
                f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
                done += 1
                if progress is not None and done % 1000 == 0:
                    progress(done, total)
    if progress is not None:
        progress(total, total)
    return total


def import_jsonl(
    target: Database | str | os.PathLike[str],
    src: str | os.PathLike[str] | IO[str],
    *,
    batch: int = 1000,
    progress: Progress | None = None,
    config: Config | None = None,
) -> int:
    """Put every line of a JSON-lines export into ``target``; returns the keys written.

    Each group of ``batch`` keys is one transaction. A malformed line raises
    ``InvalidArgument`` naming its line number; the groups before it stay.
    """
    if batch < 1:
        raise InvalidArgument(f"batch must be >= 1, not {batch}")
    written = 0
    # The file first: an unreadable one leaves no new, empty target behind.
    with _text(src, "r") as f, _database(target, config) as db:
        ops: list[Put] = []
        first = 0

        def commit(last: int) -> None:
            try:
                db.txn([], ops)
            except InvalidArgument as exc:
                raise type(exc)(f"lines {first}..{last}: {exc}") from exc

        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            op = _parse_line(line, number)
            if op is None:
                continue
            first = first or number
            ops.append(op)
            if len(ops) >= batch:
                commit(number)
                written += len(ops)
                ops, first = [], 0
                if progress is not None:
                    progress(written, 0)
        if ops:
            commit(number)
            written += len(ops)
    if progress is not None:
        progress(written, written)
    return written


def _parse_line(line: str, number: int) -> Put | None:
    """The put for one export line, or None for a key that has expired."""
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise InvalidArgument(f"line {number}: not JSON ({exc})") from None
    if not isinstance(item, dict) or not {"table", "key", "value"} <= item.keys():
        raise InvalidArgument(f'line {number}: needs an object with "table", "key" and "value"')
    table, key = item["table"], item["key"]
    if not isinstance(table, str) or not isinstance(key, str):
        raise InvalidArgument(f"line {number}: table and key must be strings")
    ttl_ms = None
    expires = item.get("expires_at_ms")
    if expires is not None:
        if isinstance(expires, bool) or not isinstance(expires, int):
            raise InvalidArgument(f"line {number}: expires_at_ms must be an int or null")
        ttl_ms = expires - time.time_ns() // 1_000_000
        if ttl_ms <= 0:
            return None
    return Put(table, key, item["value"], ttl_ms)
