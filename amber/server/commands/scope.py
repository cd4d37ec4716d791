"""What a command reads and writes: the database directly, or a recording scope.

A read-only command reads :class:`DirectReads` — the database's lock-free
reads, nothing recorded. A write command runs against a :class:`Scope`: its
reads are recorded with the ``mod_revision`` they saw, its writes become
ops, and afterwards the scope commits as **one** batch whose compares say
"nothing I read has changed". So a read-modify-write (INCR, JSON.SET at a
path, a MULTI block) is atomic and serializable: if another writer got in
between, the commit fails with ``ConditionFailed`` and the command runs again
on the new state. A scope sees its own writes (later commands of a MULTI see
earlier ones).
"""

from __future__ import annotations

import time
from typing import Any

from ...database import (
    Compare,
    Database,
    Delete,
    DropTable,
    Entry,
    Merge,
    Page,
    Put,
    Table,
    Update,
)
from ...model import check_key, check_table, freeze, merge_patch
from ...store.updates import ABSENT, UNCHANGED, UPDATES, Refused
from .registry import Entries, Later
from .replies import ErrorReply
from .values import MISSING

__all__ = ["DirectReads", "MustDrain", "Scope"]

#: Table handles a ``DirectReads`` remembers before it starts over.
_MAX_HANDLES = 1024


class MustDrain(Exception):
    """A command read while this connection still has writes in flight.

    Reads must see the connection's own earlier writes, so the front end
    waits for them and runs the command again (handlers have no side effects
    until their scope commits).
    """


class DirectReads:
    """The database's own reads, for read-only commands."""

    __slots__ = ("_handles", "db")

    def __init__(self, db: Database) -> None:
        self.db = db
        #: Table handles by name: a GET skips ``Database.table``'s checks.
        self._handles: dict[str, Table] = {}

    def get(self, table: str, key: str) -> Any:
        """The key's value or ``MISSING``."""
        handle = self._handles.get(table)
        if handle is None:
            handle = self.handle(table)
        return handle.get(key, MISSING)

    def handle(self, table: str) -> Table:
        """``db.table(table)``, remembered (handles live as long as the database)."""
        handle = self.db.table(table)
        handles = self._handles
        if len(handles) >= _MAX_HANDLES:
            handles.clear()
        handles[table] = handle
        return handle

    def entry(self, table: str, key: str) -> Entry | None:
        return self.db.table(table).entry(key)

    def tables(self) -> list[str]:
        return self.db.tables()

    def scan(
        self, table: str, *, prefix: str | None = None, start: str | None = None, limit: int
    ) -> Page:
        return self.db.table(table).scan(prefix, start=start, limit=limit)

    def count(self, table: str) -> int:
        return self.db.table(table).count()


class _Deferred:
    """Updates of a key whose value this scope has not read: known once applied.

    A chain, each link the updates before plus one, so buffering one more is
    O(1) (a copied tuple made a MULTI of n INCRs on one key O(n²)) and a
    link a rolled-back command made is simply dropped.
    """

    __slots__ = ("args", "before", "fn")

    def __init__(self, before: _Deferred | None, fn: str, args: tuple[Any, ...]) -> None:
        self.before = before
        self.fn = fn
        self.args = args

    def updates(self) -> list[tuple[str, tuple[Any, ...]]]:
        """Every update of the chain, oldest first."""
        steps = []
        link: _Deferred | None = self
        while link is not None:
            steps.append((link.fn, link.args))
            link = link.before
        steps.reverse()
        return steps


class _Unseen:
    """Not in ``Scope.local``: this scope has neither read nor written the key."""


_UNSEEN = _Unseen()


def update_reply(index: int) -> Later:
    """The answer of a command's ``index``-th op, an update: its result or its refusal."""

    def finish(entries: Entries) -> Any:
        outcome = entries[index]
        return ErrorReply(outcome.error) if outcome.error is not None else outcome.result

    return Later(finish)


class Scope(DirectReads):
    """Recorded reads plus buffered writes, committed as one batch.

    An update (:meth:`update`) reads nothing: its value is computed when the
    batch applies. Only if a later command of the same scope reads that key
    is its value read then, with a compare, and the updates replayed on it
    (the compare makes the apply-time result the same).
    """

    __slots__ = ("barrier", "conditions", "dropped", "local", "ops", "reads", "undo")

    def __init__(self, db: Database, *, barrier: bool = False) -> None:
        super().__init__(db)
        #: Reads must wait (``MustDrain``): the connection has writes in flight.
        self.barrier = barrier
        #: (table, key) -> the mod_revision read (0: absent).
        self.reads: dict[tuple[str, str], int] = {}
        #: (table, key) -> the entry as this scope sees it (None: absent), or
        #: the updates buffered on a key it has not read.
        self.local: dict[tuple[str, str], Entry | _Deferred | None] = {}
        self.ops: list[Put | Merge | Update | Delete | DropTable] = []
        self.dropped: set[str] = set()
        #: Explicit compares (AMBER.TXN); a failure is the answer, never retried.
        self.conditions: list[Compare] = []
        #: Once :meth:`mark` was called (MULTI): each change to ``local`` as
        #: (key, what it held), or (None, table) for a table added to
        #: ``dropped``, so :meth:`rollback` costs what the command changed,
        #: not a copy of everything before it (O(n²) over a block).
        self.undo: list[tuple[tuple[str, str] | None, Any]] | None = None

    # -- reads ----------------------------------------------------------------

    def get(self, table: str, key: str) -> Any:
        entry = self.entry(table, key)
        return MISSING if entry is None else entry.value

    def entry(self, table: str, key: str) -> Entry | None:
        where = (table, key)
        local = self.local
        known = local.get(where, _UNSEEN)
        if not isinstance(known, _Deferred | _Unseen):
            return known
        if isinstance(known, _Unseen) and table in self.dropped:
            return None
        if self.barrier:
            raise MustDrain
        entry = self.db.table(table).entry(key)
        self.reads.setdefault(where, 0 if entry is None else entry.mod_revision)
        if isinstance(known, _Deferred):  # this scope's updates wait on it: replay them
            entry = _replayed(key, entry, known)
        self._set(where, entry)
        return entry

    def watch(self, table: str, key: str, mod_revision: int) -> None:
        """Make the commit conditional on the key still being at ``mod_revision``."""
        self.reads.setdefault((table, key), mod_revision)

    def _peek(self, table: str, key: str) -> Entry | None:
        """The entry without recording a read (for bookkeeping only)."""
        where = (table, key)
        if where in self.local:
            known = self.local[where]
            if isinstance(known, _Deferred):
                return self.entry(table, key)  # its value is needed now: read it
            return known
        if table in self.dropped:
            return None
        return self.db.table(table).entry(key)

    def tables(self) -> list[str]:
        if self.barrier:
            raise MustDrain
        return self.db.tables()

    def scan(
        self, table: str, *, prefix: str | None = None, start: str | None = None, limit: int
    ) -> Page:
        if self.barrier:
            raise MustDrain
        return super().scan(table, prefix=prefix, start=start, limit=limit)

    def count(self, table: str) -> int:
        if self.barrier:
            raise MustDrain
        return super().count(table)

    # -- writes ---------------------------------------------------------------

    def _set(self, where: tuple[str, str], known: Entry | _Deferred | None) -> None:
        """What this scope knows of a key from now on (undone by :meth:`rollback`)."""
        if self.undo is not None:
            self.undo.append((where, self.local.get(where, _UNSEEN)))
        self.local[where] = known

    def _names(self, table: str, key: str) -> tuple[str, str]:
        limits = self.db.config.limits
        return check_table(table, limits), check_key(key, limits)

    def put(
        self,
        table: str,
        key: str,
        value: Any,
        *,
        ttl_ms: int | None = None,
        keep_ttl: bool = False,
        expires_at_ms: int | None = None,
    ) -> int:
        """Buffer a put; returns its op index."""
        table, key = self._names(table, key)
        frozen = freeze(value, self.db.config.limits)
        if keep_ttl:
            prev = self._peek(table, key)
            expires = prev.expires_at_ms if prev is not None else None
        elif expires_at_ms is not None:
            expires = expires_at_ms
        else:
            expires = None if ttl_ms is None else _now_ms() + ttl_ms
        self.ops.append(Put(table, key, frozen, ttl_ms, keep_ttl, expires_at_ms))
        self._set((table, key), Entry(key, frozen, -1, -1, -1, expires))
        return len(self.ops) - 1

    def merge(self, table: str, key: str, patch: Any, *, ttl_ms: int | None = None) -> int:
        table, key = self._names(table, key)
        frozen = freeze(patch, self.db.config.limits)
        prev = self._peek(table, key)
        value = merge_patch(None if prev is None else prev.value, frozen)
        expires = prev.expires_at_ms if prev is not None else None
        if ttl_ms is not None:
            expires = _now_ms() + ttl_ms
        self.ops.append(Merge(table, key, frozen, ttl_ms))
        self._set((table, key), Entry(key, value, -1, -1, -1, expires))
        return len(self.ops) - 1

    def update(self, table: str, key: str, fn: str, *args: Any) -> int:
        """Buffer an update (:mod:`amber.store.updates`) without reading; returns its op index.

        Answer the command with :func:`update_reply`: the result exists once
        the batch has applied.
        """
        table, key = self._names(table, key)
        where = (table, key)
        step = _Deferred(None, fn, args)
        if where in self.local:
            known = self.local[where]
            if isinstance(known, _Deferred):
                self._set(where, _Deferred(known, fn, args))
            else:  # this scope knows the value: replay on it, as the store will
                self._set(where, _replayed(key, known, step))
        elif table in self.dropped:
            self._set(where, _replayed(key, None, step))
        else:
            self._set(where, step)
        self.ops.append(Update(table, key, fn, args))
        return len(self.ops) - 1

    def delete(self, table: str, key: str) -> int:
        table, key = self._names(table, key)
        self.ops.append(Delete(table, key))
        self._set((table, key), None)
        return len(self.ops) - 1

    def drop_table(self, table: str) -> int:
        table = check_table(table, self.db.config.limits)
        self.ops.append(DropTable(table))
        for where in [w for w in self.local if w[0] == table]:
            self._set(where, None)
        if table not in self.dropped:
            self.dropped.add(table)
            if self.undo is not None:
                self.undo.append((None, table))
        return len(self.ops) - 1

    # -- committing -----------------------------------------------------------

    def mark(self) -> tuple[int, int]:
        """A point to roll back to when one command of a MULTI fails: (ops, undo steps)."""
        if self.undo is None:
            self.undo = []
        return len(self.ops), len(self.undo)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget what was buffered and learned since ``mark``."""
        count, steps = mark
        del self.ops[count:]
        undo = self.undo
        assert undo is not None  # a mark started it
        while len(undo) > steps:
            where, before = undo.pop()
            if where is None:
                self.dropped.discard(before)
            elif before is _UNSEEN:
                del self.local[where]
            else:
                self.local[where] = before

    def compares(self) -> list[Compare]:
        return [
            *self.conditions,
            *(
                Compare(table, key, "mod_revision", "=", revision)
                for (table, key), revision in self.reads.items()
            ),
        ]

    def written_keys(self) -> list[tuple[str, str]]:
        return [(op.table, op.key) for op in self.ops if not isinstance(op, DropTable)]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _replayed(key: str, entry: Entry | None, deferred: _Deferred) -> Entry | None:
    """``entry`` after the buffered updates, as the store will apply them (refusals skip)."""
    value: Any = ABSENT if entry is None else entry.value
    for fn, args in deferred.updates():
        try:
            new, _ = UPDATES[fn](value, *args)
        except Refused:
            continue
        if new is not UNCHANGED:
            value = new
    if value is ABSENT:
        return None
    if entry is not None and value is entry.value:
        return entry
    expires = entry.expires_at_ms if entry is not None else None
    return Entry(key, value, -1, -1, -1, expires)
