"""The ``sqlite`` backend: the log and snapshots in one SQLite file.

URL: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (as
SQLAlchemy writes them); ``?table_prefix=name_`` (default ``amber_``) lets
several Amber databases share one file. Tables and format:
:mod:`amber.persistence.sql`.

Writer lock
-----------
The connection runs in ``locking_mode=EXCLUSIVE`` and takes the database's
exclusive file lock at recovery (``BEGIN EXCLUSIVE``); SQLite then never
releases it until the connection closes, and the OS drops it when the
process dies (SIGKILL included). A second open — another process, or another
connection in this one — gets ``Locked`` and changes nothing. Exclusive mode
also means the WAL index lives in process memory (no ``-shm`` file).

Durability
----------
``journal_mode=WAL``. A flush is one transaction:

- ``flush(sync=True)`` (durability ``always``; ``interval``'s periodic sync;
  snapshots; close) commits with ``synchronous=FULL``: the WAL file is
  fsynced before the commit returns — survives power loss;
- ``flush(sync=False)`` (``interval``/``never``) commits with
  ``synchronous=NORMAL``: the commit reached the OS (survives a crash of the
  process) and is fsynced at the next FULL commit or checkpoint. A sync with
  nothing new to write commits a marker row under FULL, which fsyncs the WAL
  and so every commit before it.

Damage that SQLite itself finds (``database disk image is malformed``, not
a database) is ``Corrupted`` naming the file; damage inside a row is found by
the row's CRC-32C and named by table and row.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..config import Config
from ..errors import AmberError, Corrupted, InvalidArgument, Locked, StorageFailed
from .sql import SqlBackend

__all__ = ["SqliteBackend", "parse_sqlite_url"]


def parse_sqlite_url(url: str) -> tuple[str, dict[str, str]]:
    """``(path, options)`` from ``sqlite:///file.db?table_prefix=…``."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument(f"sqlite URL {url!r} names a host: write sqlite:///path.db")
    path = unquote(parts.path)
    if not path.startswith("/") or len(path) < 2:
        raise InvalidArgument(f"sqlite URL {url!r} has no file: write sqlite:///path.db")
    path = path[1:]  # sqlite:///rel.db → rel.db, sqlite:////abs.db → /abs.db
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(options) - {"table_prefix"}
    if unknown:
        raise InvalidArgument(f"unknown sqlite URL options {sorted(unknown)} (use table_prefix)")
    return path, options


class SqliteBackend(SqlBackend):
    """One SQLite file; see the module doc for the lock and the durability per mode."""

    name = "sqlite"
    int_type = "INTEGER"

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: Config | None = None,
        *,
        table_prefix: str = "amber_",
    ) -> None:
        self.path = os.path.abspath(os.fspath(path))
        super().__init__(f"sqlite:///{self.path}", config, table_prefix)
        self._synchronous = ""

    @classmethod
    def from_url(cls, url: str, config: Config | None = None) -> SqliteBackend:
        path, options = parse_sqlite_url(url)
        return cls(path, config, table_prefix=options.get("table_prefix", "amber_"))

    def _connect(self) -> Any:
        if os.path.isdir(self.path):
            raise InvalidArgument(f"{self.path} is a folder: a sqlite URL names a file")
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise InvalidArgument(f"no folder {folder} for the sqlite file {self.path}")
        # timeout=0: a held lock is reported at once, never waited for.
        return sqlite3.connect(self.path, timeout=0, isolation_level=None, check_same_thread=False)

    def _lock(self, conn: Any) -> None:
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute("BEGIN EXCLUSIVE")
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise Locked(
                    f"sqlite database {self.path} is in use by another writer (its file "
                    "lock is held); close it there first"
                ) from None
            raise
        if str(mode).lower() != "wal":
            raise StorageFailed(f"sqlite database {self.path} refused WAL mode ({mode})")

    def _begin(self, conn: Any, sync: bool) -> None:
        level = "FULL" if sync else "NORMAL"
        if level != self._synchronous:
            conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level
        conn.execute("BEGIN IMMEDIATE")

    def _translate(self, exc: Exception, what: str) -> AmberError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
            "malformed" in text or "not a database" in text
        ):
            return Corrupted(f"sqlite reports: {text}", self.path)
        return StorageFailed(f"{what} {self.where} failed: {text}")
