"""``Transaction``: an optimistic read-write block over a ``Database``.

Apart from ``Database`` because it only builds on its public API (``table``,
``txn``). ``TxnResult`` lives here, so both can use it without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import InvalidArgument
from .model import check_key, check_table, freeze, merge_patch
from .store.batch import Compare, Delete, Merge, Op, Put
from .table import Entry, _ttl_ms

if TYPE_CHECKING:
    from .database import Database

_MISSING: Any = object()


class UpdateResult(NamedTuple):
    """What an ``Update`` op did (see :mod:`amber.store.updates`)."""

    #: The key's entry after the op (unchanged if it refused; None: absent).
    entry: Entry | None
    #: The update function's answer (None if it refused).
    result: Any
    #: Why it changed nothing (a Redis error reply's text), or None.
    error: str | None


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A committed transaction: its revision and one entry per op.

    For put and merge the new entry, for delete the deleted one (None when
    the key was absent), an :class:`UpdateResult` for an update, None for
    the other ops.
    """

    revision: int
    entries: list[Entry | UpdateResult | None] = field(default_factory=list)
    #: On an eventual table: each write's stamp ``(ms, counter, node)``, in op order.
    stamps: list[tuple[int, int, str]] = field(default_factory=list)


class Transaction:
    """Optimistic transaction; see ``Database.transaction``."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._reads: dict[tuple[str, str], int] = {}
        self._local: dict[tuple[str, str], Any] = {}
        self._ops: list[Op] = []
        self._done = False
        self.result: TxnResult | None = None

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None and not self._done:
            self.commit()
        self._done = True

    def _read(self, table: str, key: str) -> Any:
        """The key's value as this transaction sees it; records what it read."""
        where = (table, key)
        if where in self._local:
            return self._local[where]
        entry = self._db.table(table).entry(key)
        self._reads.setdefault(where, entry.mod_revision if entry is not None else 0)
        value = entry.value if entry is not None else _MISSING
        self._local[where] = value
        return value

    def get(self, table: str, key: str, default: Any = None) -> Any:
        """Read a key; its revision becomes a condition of the commit."""
        self._check()
        value = self._read(table, check_key(key, self._db.config.limits))
        return default if value is _MISSING else value

    def _target(self, table: str, key: str) -> tuple[str, str]:
        """The checked names of a key this transaction writes."""
        self._check()
        limits = self._db.config.limits
        return check_table(table, limits), check_key(key, limits)

    def put(self, table: str, key: str, value: Any, *, ttl: float | None = None) -> None:
        table, key = self._target(table, key)
        frozen = freeze(value, self._db.config.limits)
        self._ops.append(Put(table, key, frozen, _ttl_ms(ttl)))
        self._local[(table, key)] = frozen

    def merge(self, table: str, key: str, patch: Any) -> None:
        table, key = self._target(table, key)
        frozen = freeze(patch, self._db.config.limits)
        self._ops.append(Merge(table, key, frozen))
        where = (table, key)
        if where in self._local:
            base = self._local[where]
            self._local[where] = merge_patch(None if base is _MISSING else base, frozen)

    def delete(self, table: str, key: str) -> None:
        table, key = self._target(table, key)
        self._ops.append(Delete(table, key))
        self._local[(table, key)] = _MISSING

    def commit(self) -> TxnResult:
        """Commit now (the ``with`` block does it on exit)."""
        self._check()
        self._done = True
        if not self._ops:
            self.result = TxnResult(self._db.revision)
            return self.result
        compares = [
            Compare(table, key, "mod_revision", "=", revision)
            for (table, key), revision in self._reads.items()
        ]
        self.result = self._db.txn(compares, self._ops)
        return self.result

    def abort(self) -> None:
        """Discard the writes."""
        self._done = True
        self._ops.clear()

    def _check(self) -> None:
        if self._done:
            raise InvalidArgument("the transaction is already committed or aborted")
