"""The one exception tree of Amber.

Every error Amber raises on purpose is an :class:`AmberError`; lower-layer
errors (``OSError``, ``msgpack`` errors) are translated at the boundary with
``raise ... from exc`` so callers only ever need to catch this tree::

    AmberError
    ├── InvalidArgument (ValueError)     a call's arguments are off
    │   ├── InvalidValue                 a value is not JSON-compatible; .path
    │   ├── InvalidName                  a table name or key breaks the limits
    │   ├── InvalidQuery                 a scan filter or range is malformed
    │   └── TooLarge                     an encoded value or batch is over its limit
    ├── NotFound (KeyError)              a key that must exist does not
    ├── ConditionFailed                  a compare-and-set condition did not hold
    ├── Closed                           the database (or watch) was closed
    ├── Locked                           another process writes this data folder
    ├── Corrupted                        a persistent file is damaged; .file, .offset
    ├── StorageFailed                    the disk failed a write/fsync; writes stop
    ├── Compacted                        a watch asked for history no longer kept
    ├── Lagged                           a watcher fell too far behind and was cut off
    ├── Unavailable                      no cluster leader or quorum: not applied, retry
    └── UnknownOutcome                   the cluster lost track of a write: it may or may not apply

Messages say what was wrong, where (table, key, file, offset) and what to do.
"""

from __future__ import annotations

__all__ = [
    "AmberError",
    "Closed",
    "Compacted",
    "ConditionFailed",
    "Corrupted",
    "InvalidArgument",
    "InvalidName",
    "InvalidQuery",
    "InvalidValue",
    "Lagged",
    "Locked",
    "NotFound",
    "StorageFailed",
    "TooLarge",
    "Unavailable",
    "UnknownOutcome",
]


class AmberError(Exception):
    """Base of every error Amber raises on purpose."""


class InvalidArgument(AmberError, ValueError):
    """A call's arguments are off; nothing was changed."""


class InvalidValue(InvalidArgument):
    """A value is not JSON-compatible (bytes, set, NaN, non-str key, too deep).

    ``path`` is the JSON Pointer (RFC 6901) of the offending member, ``""`` for
    the root, so the caller can find it in a large document.
    """

    def __init__(self, message: str, path: str = "") -> None:
        where = f" at {path!r}" if path else ""
        super().__init__(f"{message}{where}")
        self.path = path


class InvalidName(InvalidArgument):
    """A table name or key breaks the configured limits."""


class InvalidQuery(InvalidArgument):
    """A scan's range, filter or option is malformed."""


class TooLarge(InvalidArgument):
    """An encoded value or batch is over its configured size limit."""


class NotFound(AmberError, KeyError):
    """A key that must exist does not (``table[key]``, ``del table[key]``)."""

    def __init__(self, table: str, key: str) -> None:
        super().__init__(f"key {key!r} not found in table {table!r}")
        self.table = table
        self.key = key

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ConditionFailed(AmberError):
    """A compare-and-set condition did not hold; the batch changed nothing.

    ``table``/``key`` name the first compare that failed (``None`` for a
    transaction conflict found as a whole).
    """

    def __init__(self, message: str, table: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.key = key


class Closed(AmberError):
    """The database, table handle or watch was used after close()."""


class Locked(AmberError):
    """Another process (or another open handle) already writes this data folder."""


class Corrupted(AmberError):
    """A persistent file is damaged in a way recovery must not paper over.

    ``file`` and ``offset`` say where; Amber refuses to open rather than
    silently skip data that may hold acknowledged writes.
    """

    def __init__(self, message: str, file: str | None = None, offset: int | None = None) -> None:
        where = ""
        if file is not None:
            where = f" ({file}" + (f" at offset {offset}" if offset is not None else "") + ")"
        super().__init__(f"{message}{where}")
        self.file = file
        self.offset = offset


class StorageFailed(AmberError):
    """A write or fsync failed; the database stops taking writes.

    After a failed fsync the kernel may have dropped the dirty pages, so
    retrying could acknowledge data that is not on disk (the 2018
    "fsyncgate" lesson): reopen the database to recover from what is durable.
    """


class Compacted(AmberError):
    """A watch asked for a revision older than the history still kept."""

    def __init__(self, requested: int, oldest_available: int) -> None:
        super().__init__(
            f"revision {requested} is compacted; the oldest revision still available "
            f"is {oldest_available}: resume from there or reload the current state"
        )
        self.requested = requested
        self.oldest_available = oldest_available


class Lagged(AmberError):
    """A watcher's queue overflowed; it was cut off and may resume.

    ``last_revision`` is the last revision fully delivered: watch again with
    ``start_revision=last_revision + 1`` to receive exactly what was missed.
    """

    def __init__(self, last_revision: int) -> None:
        super().__init__(
            f"watcher fell behind and was cut off after revision {last_revision}; "
            f"resume with start_revision={last_revision + 1}"
        )
        self.last_revision = last_revision


class Unavailable(AmberError):
    """The cluster cannot take the request now (no leader, no quorum, queue full).

    The write was certainly not applied: retrying is safe.
    """


class UnknownOutcome(AmberError):
    """A cluster write whose fate is unknown: it may have been applied, or may still be.

    Raised when the leader changed or the wait timed out after the write left
    this node. Read the key before retrying a write that is not idempotent.
    """
