"""``Table``: one table's reads and writes, with ``Entry`` and ``Page``.

Apart from ``Database`` because most callers only use a handle; the
guarantees are those listed in :mod:`amber.database`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from .errors import Closed, InvalidArgument, InvalidName, NotFound
from .model import check_key, compile_where, freeze
from .store.batch import Batch, Compare, Delete, Merge, Put
from .store.state import ApplyResult, Record, TableState
from .watch import Event, Progress, Watch

if TYPE_CHECKING:
    from .database import Database

_MISSING: Any = object()
_PAGE = 1000


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Entry(NamedTuple):
    """A key's value with its revision metadata."""

    key: str
    value: Any
    create_revision: int
    mod_revision: int
    version: int
    #: Unix time in milliseconds when the key expires, or None.
    expires_at_ms: int | None


def _entry(key: str, record: Record) -> Entry:
    return Entry(key, record[0], record[1], record[2], record[3], record[4])


@dataclass(frozen=True, slots=True)
class Page:
    """One scan's result: items in key order and whether more match."""

    items: list[tuple[str, Any]]
    more: bool
    #: The database revision the page was read at (start a watch after it).
    revision: int

    @property
    def next_start(self) -> str | None:
        """``start=`` for the next forward page (the least key after the last)."""
        return self.items[-1][0] + "\x00" if self.items else None


class _ClosedRows(dict[str, Record]):
    """Stands in for a table's rows after close, so the hot read path needs no check."""

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise Closed("the database is closed")


_CLOSED_ROWS = _ClosedRows()


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise InvalidArgument(f"ttl must be a number of seconds, not {ttl!r}")
    if ttl <= 0:
        raise InvalidArgument(f"ttl must be positive, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def _conditions(
    table: str,
    key: str,
    if_absent: bool = False,
    if_revision: int | None = None,
    if_version: int | None = None,
) -> tuple[Compare, ...]:
    compares: list[Compare] = []
    if if_absent:
        compares.append(Compare(table, key, "exists", "=", False))
    for target, number in (("mod_revision", if_revision), ("version", if_version)):
        if number is not None:
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidArgument(f"if_{target.split('_')[0]} must be an int >= 0")
            compares.append(Compare(table, key, target, "=", number))  # type: ignore[arg-type]
    return tuple(compares)


def _check_range(prefix: str | None, start: str | None, end: str | None, limit: int | None) -> None:
    for name, value in (("prefix", prefix), ("start", start), ("end", end)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{name} must be a str, not {type(value).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be an int >= 0, not {limit!r}")


def _merged(result: ApplyResult) -> Any:
    """A one-merge batch's new value."""
    record = result.outcomes[0]
    assert record is not None
    return record[0]


def _existed(result: ApplyResult) -> bool:
    """Whether a one-delete batch's key existed."""
    return result.outcomes[0] is not None


class Table:
    """A handle on one table; cheap, cached by ``Database.table``."""

    __slots__ = ("__weakref__", "_db", "_rows", "_state", "name")

    def __init__(self, db: Database, state: TableState) -> None:
        self._db = db
        self._state = state
        self._rows = state.rows
        self.name = state.name

    def __repr__(self) -> str:
        return f"<amber.Table {self.name!r}>"

    # -- reads (lock-free) ----------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The key's value, or ``default`` when absent or expired."""
        try:
            record = self._rows.get(key)
        except TypeError:
            raise InvalidName(f"key must be a str, not {type(key).__name__}") from None
        if record is None:
            return default
        expires = record[4]
        if expires is not None and expires <= time.time_ns() // 1_000_000:
            return default
        return record[0]

    def entry(self, key: str) -> Entry | None:
        """The key's value with ``create_revision``, ``mod_revision``, ``version``."""
        try:
            record = self._rows.get(key)
        except TypeError:
            raise InvalidName(f"key must be a str, not {type(key).__name__}") from None
        if record is None or (record[4] is not None and record[4] <= _now_ms()):
            return None
        return _entry(key, record)

    def ttl(self, key: str) -> float | None:
        """Seconds until the key expires; None when it has no TTL; NotFound if absent."""
        entry = self.entry(key)
        if entry is None:
            raise NotFound(self.name, key)
        if entry.expires_at_ms is None:
            return None
        return max(0.0, (entry.expires_at_ms - _now_ms()) / 1000)

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise NotFound(self.name, key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, _MISSING) is not _MISSING

    def __len__(self) -> int:
        return self.count()

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self.items())

    # -- multi-key reads (consistent per page) -------------------------------

    def scan(
        self,
        prefix: str | None = None,
        *,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
        where: Sequence[Sequence[Any]] | None = None,
    ) -> Page:
        """Live items in ``[start, end)`` with ``prefix``, in key order.

        ``where`` filters on document fields, e.g.
        ``[("user.age", ">", 30), ("tags", "contains", "x")]``; ``limit`` caps
        the items and ``Page.more`` says whether more match. The page is one
        consistent read.
        """
        _check_range(prefix, start, end, limit)
        predicate = compile_where(where)
        store = self._db._node.store
        with store.lock:
            self._db._check_open()
            items, more = store.scan(
                self.name,
                now_ms=_now_ms(),
                prefix=prefix,
                start=start,
                end=end,
                limit=limit,
                reverse=reverse,
                where=predicate,
            )
            revision = store.revision
        return Page([(key, record[0]) for key, record in items], more, revision)

    def count(
        self,
        prefix: str | None = None,
        *,
        start: str | None = None,
        end: str | None = None,
        where: Sequence[Sequence[Any]] | None = None,
    ) -> int:
        """How many live keys match; O(log n) for a plain range without TTLs."""
        _check_range(prefix, start, end, None)
        predicate = compile_where(where)
        store = self._db._node.store
        with store.lock:
            self._db._check_open()
            return store.count(
                self.name, now_ms=_now_ms(), prefix=prefix, start=start, end=end, where=predicate
            )

    def items(self, prefix: str | None = None) -> Iterator[tuple[str, Any]]:
        """Every live ``(key, value)`` in key order, read in consistent pages."""
        start: str | None = None
        while True:
            page = self.scan(prefix, start=start, limit=_PAGE)
            yield from page.items
            if not page.more:
                return
            start = page.next_start

    def keys(self, prefix: str | None = None) -> Iterator[str]:
        return (key for key, _ in self.items(prefix))

    def values(self, prefix: str | None = None) -> Iterator[Any]:
        return (value for _, value in self.items(prefix))

    # -- writes -----------------------------------------------------------------

    def _put_batch(  # noqa: PLR0917 - private: put and aput pass their arguments in order
        self,
        key: str,
        value: Any,
        ttl: float | None,
        keep_ttl: bool,
        if_absent: bool,
        if_revision: int | None,
        if_version: int | None,
    ) -> Batch:
        limits = self._db.config.limits
        key = check_key(key, limits)
        if keep_ttl and ttl is not None:
            raise InvalidArgument("give either ttl or keep_ttl, not both")
        op = Put(self.name, key, freeze(value, limits), _ttl_ms(ttl), keep_ttl)
        return Batch((op,), _conditions(self.name, key, if_absent, if_revision, if_version))

    def _merge_batch(
        self,
        key: str,
        patch: Any,
        ttl: float | None,
        if_revision: int | None,
        if_version: int | None,
    ) -> Batch:
        limits = self._db.config.limits
        key = check_key(key, limits)
        op = Merge(self.name, key, freeze(patch, limits), _ttl_ms(ttl))
        return Batch((op,), _conditions(self.name, key, False, if_revision, if_version))

    def _delete_batch(self, key: str, if_revision: int | None, if_version: int | None) -> Batch:
        key = check_key(key, self._db.config.limits)
        return Batch(
            (Delete(self.name, key),), _conditions(self.name, key, False, if_revision, if_version)
        )

    def put(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        keep_ttl: bool = False,
        if_absent: bool = False,
        if_revision: int | None = None,
        if_version: int | None = None,
    ) -> int:
        """Set the key's value; returns the revision of the write.

        ``ttl`` (seconds) makes the key expire; without it a put clears any
        TTL unless ``keep_ttl``. ``if_absent`` / ``if_revision`` (the key's
        mod_revision) / ``if_version`` make it a compare-and-set.
        """
        batch = self._put_batch(key, value, ttl, keep_ttl, if_absent, if_revision, if_version)
        return self._db._commit(batch).revision

    def merge(
        self,
        key: str,
        patch: Any,
        *,
        ttl: float | None = None,
        if_revision: int | None = None,
        if_version: int | None = None,
    ) -> Any:
        """RFC 7396 merge ``patch`` into the key (created if absent); returns the new value.

        A null member removes that member; the key's TTL is kept unless ``ttl``.
        """
        batch = self._merge_batch(key, patch, ttl, if_revision, if_version)
        return _merged(self._db._commit(batch))

    def delete(
        self, key: str, *, if_revision: int | None = None, if_version: int | None = None
    ) -> bool:
        """Remove the key; returns whether it existed."""
        return _existed(self._db._commit(self._delete_batch(key, if_revision, if_version)))

    def __setitem__(self, key: str, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: str) -> None:
        if not self.delete(key):
            raise NotFound(self.name, key)

    # -- asyncio face: same guarantees, the event loop never waits on fsync ------

    async def aput(
        self,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        keep_ttl: bool = False,
        if_absent: bool = False,
        if_revision: int | None = None,
        if_version: int | None = None,
    ) -> int:
        """``put`` for asyncio."""
        batch = self._put_batch(key, value, ttl, keep_ttl, if_absent, if_revision, if_version)
        return (await self._db._acommit(batch)).revision

    async def amerge(
        self,
        key: str,
        patch: Any,
        *,
        ttl: float | None = None,
        if_revision: int | None = None,
        if_version: int | None = None,
    ) -> Any:
        """``merge`` for asyncio."""
        batch = self._merge_batch(key, patch, ttl, if_revision, if_version)
        return _merged(await self._db._acommit(batch))

    async def adelete(
        self, key: str, *, if_revision: int | None = None, if_version: int | None = None
    ) -> bool:
        """``delete`` for asyncio."""
        return _existed(await self._db._acommit(self._delete_batch(key, if_revision, if_version)))

    # -- watching -----------------------------------------------------------------

    @overload
    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int | None = None,
        prev_value: bool = True,
        skip_noop: bool = False,
        progress_interval: None = None,
        callback: Callable[[Event], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> Watch[Event]: ...
    @overload
    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int | None = None,
        prev_value: bool = True,
        skip_noop: bool = False,
        progress_interval: float,
        callback: Callable[[Event | Progress], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> Watch[Event | Progress]: ...
    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int | None = None,
        prev_value: bool = True,
        skip_noop: bool = False,
        progress_interval: float | None = None,
        callback: Callable[[Any], object] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
    ) -> Watch[Any]:
        """Watch this table's changes to ``key``, to keys under ``prefix``, or to all.

        See ``Database.watch`` for the options and the guarantees.
        """
        return self._db.watch(
            self.name,
            key,
            prefix=prefix,
            start_revision=start_revision,
            prev_value=prev_value,
            skip_noop=skip_noop,
            progress_interval=progress_interval,
            callback=callback,
            on_error=on_error,
        )
