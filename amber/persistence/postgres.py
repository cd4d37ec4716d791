"""The ``postgres`` backend: the log and snapshots in PostgreSQL tables (psycopg 3).

For hosts without a durable disk: the state lives in a PostgreSQL database.
URL: ``postgresql://user[:password]@host[:port]/dbname`` (or ``postgres://``)
with any libpq options (``sslmode=…``, ``connect_timeout=…``) plus
``table_prefix=name_`` (default ``amber_``) so several Amber databases can
share one PostgreSQL database. The tables are created on first use; their
format is :mod:`amber.persistence.sql`. Needs the ``postgres`` extra
(``pip install 'amber-db[postgres]'``).

Writer lock
-----------
A session-level advisory lock, ``pg_try_advisory_lock(0x616d6272,
crc32c(table_prefix))``, taken by the one connection that does every write
and held until it closes. When the writer process dies (SIGKILL included)
its socket closes and the server drops the lock; a writer cut off by the
network keeps it until the server notices (TCP keepalive), and since every
write goes through the locking session, a writer whose session is gone can
write nothing more: its next flush fails with ``StorageFailed``. A second
open gets ``Locked`` naming the holder's backend pid and application name
(``amber pid N``).

Durability
----------
A flush is one transaction holding the whole group (group commit):

- ``flush(sync=True)`` (durability ``always``; ``interval``'s periodic sync;
  snapshots; close): ``SET LOCAL synchronous_commit = on`` — the commit
  returns once the server fsynced its WAL (and, with synchronous standbys
  configured on the server, once they have it): survives a crash of the
  server machine;
- ``flush(sync=False)`` (``interval``/``never``): ``synchronous_commit = off``
  — the server has the commit (it survives this process crashing at once)
  and fsyncs it within about three ``wal_writer_delay`` (200 ms by default):
  a crash of the *server* may lose that window. A sync with nothing new to
  write commits a marker row with ``synchronous_commit = on``, which flushes
  the server's WAL and so every earlier commit.

If the connection drops, writes stop with ``StorageFailed`` (the outcome of
an unanswered commit is unknown); reopening recovers what is durable.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from ..config import Config
from ..errors import AmberError, Corrupted, InvalidArgument, Locked, StorageFailed
from .framing import checksum
from .sql import SqlBackend

__all__ = ["PostgresBackend", "parse_postgres_url"]

#: First key of the advisory lock: "ambr".
LOCK_CLASS = 0x616D6272
_OWN_OPTIONS = {"table_prefix"}


def parse_postgres_url(url: str) -> tuple[str, str, dict[str, str]]:
    """``(conninfo URL for libpq, URL without password for messages, Amber options)``."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise InvalidArgument(f"{url!r} is not a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _OWN_OPTIONS}
    libpq = [(k, v) for k, v in query if k not in _OWN_OPTIONS]
    conninfo = urlunsplit(
        ("postgresql", parts.netloc, parts.path, urlencode(libpq), parts.fragment)
    )
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    shown = urlunsplit(("postgresql", netloc, parts.path, "", ""))
    return conninfo, shown, ours


def _int32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


class PostgresBackend(SqlBackend):
    """Tables in a PostgreSQL database; see the module doc for the lock and durability."""

    name = "postgres"
    param = "%s"
    blob_type = "BYTEA"

    def __init__(
        self,
        conninfo: str,
        config: Config | None = None,
        *,
        table_prefix: str = "amber_",
        where: str | None = None,
    ) -> None:
        super().__init__(where or conninfo, config, table_prefix)
        self._conninfo = conninfo
        self._lock_key = (LOCK_CLASS, _int32(checksum(self.prefix.encode())))

    @classmethod
    def from_url(cls, url: str, config: Config | None = None) -> PostgresBackend:
        conninfo, shown, options = parse_postgres_url(url)
        prefix = options.get("table_prefix", "amber_")
        return cls(conninfo, config, table_prefix=prefix, where=shown)

    def _connect(self) -> Any:
        return psycopg.connect(
            self._conninfo, autocommit=True, application_name=f"amber pid {os.getpid()}"
        )

    def _lock(self, conn: Any) -> None:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self._lock_key).fetchone()
        if row[0]:
            return
        holder = conn.execute(
            "SELECT a.pid, a.application_name, a.client_addr FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.granted",
            (LOCK_CLASS, self._lock_key[1] & 0xFFFFFFFF),
        ).fetchone()
        who = (
            f"server backend pid {holder[0]}, application {holder[1]!r}"
            + (f" from {holder[2]}" if holder[2] else "")
            if holder
            else "another session"
        )
        raise Locked(
            f"{self.where} (tables {self.prefix}*) is in use by another writer ({who}); "
            "close it there first"
        )

    def _begin(self, conn: Any, sync: bool) -> None:
        conn.execute(f"BEGIN; SET LOCAL synchronous_commit TO {'on' if sync else 'off'}")

    def _translate(self, exc: Exception, what: str) -> AmberError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        if isinstance(exc, psycopg.errors.DataCorrupted | psycopg.errors.IndexCorrupted):
            return Corrupted(f"PostgreSQL reports: {exc}", self.where)
        return StorageFailed(f"{what} {self.where} failed: {exc}")
