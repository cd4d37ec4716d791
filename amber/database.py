"""The embedded API: ``amber.open(path)`` → ``Database`` → ``Table``.

Guarantees, for every method below unless it says otherwise:

- **Durability**: a write returns only once it is as durable as the
  database's ``durability`` mode promises (see ``amber.Config``); until then
  no reader can see it.
- **Atomicity**: a write, a ``txn`` or a ``transaction()`` block applies
  whole or not at all; a failed condition raises ``ConditionFailed`` and
  changes nothing; bad input raises an ``amber.errors`` exception before
  anything is written.
- **Ordering**: every committed change gets the next revision of the one
  counter of the database; each key keeps ``create_revision``,
  ``mod_revision`` and ``version`` (etcd's model).
- **Threads**: every method is thread-safe; concurrent writers share fsyncs.
  ``get`` is lock-free and sees each key atomically; scans, counts and
  iteration pages see whole transactions only.
- **Values** are JSON documents. What ``get`` returns is the stored object
  itself, read-only (``FrozenDict``/``FrozenList``), which is why reads run at
  dict speed: ``amber.thaw(value)`` gives a mutable copy.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, overload

from .config import Config
from .errors import Closed, InvalidArgument, InvalidName, NotFound, TooLarge
from .model import check_key, check_table, compile_where, freeze, merge_patch, pack
from .node.node import Node
from .persistence import Backend, FileLayer, LogBackend, open_backend
from .store.batch import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    Batch,
    Compare,
    Delete,
    DropTable,
    Expire,
    Merge,
    Op,
    Put,
    encode_body,
)
from .store.state import ApplyResult, Record, StoreImage, TableState
from .watch import Event, Progress, Watch, open_watch

if TYPE_CHECKING:
    from .replication.config import ClusterConfig

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


@dataclass(frozen=True, slots=True)
class TxnResult:
    """A committed transaction: its revision and one entry per op.

    For put and merge the new entry, for delete the deleted one (None when
    the key was absent), None for the other ops.
    """

    revision: int
    entries: list[Entry | None] = field(default_factory=list)


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


class Table:
    """A handle on one table; cheap, cached by ``Database.table``."""

    __slots__ = ("_db", "_rows", "_state", "name")

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

    def _put_batch(
        self,
        key: str,
        value: Any,
        *,
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
        batch = self._put_batch(
            key,
            value,
            ttl=ttl,
            keep_ttl=keep_ttl,
            if_absent=if_absent,
            if_revision=if_revision,
            if_version=if_version,
        )
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
        result = self._db._commit(self._merge_batch(key, patch, ttl, if_revision, if_version))
        record = result.outcomes[0]
        assert record is not None
        return record[0]

    def delete(
        self, key: str, *, if_revision: int | None = None, if_version: int | None = None
    ) -> bool:
        """Remove the key; returns whether it existed."""
        result = self._db._commit(self._delete_batch(key, if_revision, if_version))
        return result.outcomes[0] is not None

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
        batch = self._put_batch(
            key,
            value,
            ttl=ttl,
            keep_ttl=keep_ttl,
            if_absent=if_absent,
            if_revision=if_revision,
            if_version=if_version,
        )
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
        record = (await self._db._acommit(batch)).outcomes[0]
        assert record is not None
        return record[0]

    async def adelete(
        self, key: str, *, if_revision: int | None = None, if_version: int | None = None
    ) -> bool:
        """``delete`` for asyncio."""
        batch = self._delete_batch(key, if_revision, if_version)
        return (await self._db._acommit(batch)).outcomes[0] is not None

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
        return self._db._watch(
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


def _check_range(prefix: str | None, start: str | None, end: str | None, limit: int | None) -> None:
    for name, value in (("prefix", prefix), ("start", start), ("end", end)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(f"{name} must be a str, not {type(value).__name__}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise InvalidArgument(f"limit must be an int >= 0, not {limit!r}")


class Database:
    """An open database; create with ``amber.open``. A context manager."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self.config = node.config
        self._handles: dict[str, Table] = {}
        self._handles_lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"revision {self.revision}"
        return f"<amber.Database {self._node.backend.name} {state}>"

    @property
    def revision(self) -> int:
        """The revision of the last committed change (0 for a new database)."""
        return self._node.store.revision

    def barrier(self) -> None:
        """Make the next reads linearizable: wait until every write committed before now is visible.

        Reads on a handle are local and never wait. Alone that is already
        linearizable; in a cluster, a replica may trail the leader, and this
        waits for a Raft log barrier (one round trip, shared by concurrent
        callers). The servers call it before every read unless a client asks
        for stale reads.
        """
        self._check_open()
        self._node.read_barrier()

    async def abarrier(self) -> None:
        """``barrier`` for asyncio."""
        self._check_open()
        await self._node.aread_barrier()

    def cluster_status(self) -> dict[str, Any] | None:
        """Members, leader, term, commit/applied index, lag; None when not in a cluster."""
        self._check_open()
        return self._node.cluster_status()

    def cluster_change(self, action: str, *args: str) -> None:
        """``add`` (id, host:port), ``remove`` (id or host:port) or ``transfer`` ([id]) a member.

        Blocks until the cluster confirms (``UnknownOutcome`` after the timeout).
        """
        self._check_open()
        node = self._node
        status = node.cluster_status()
        if status is None:
            raise InvalidArgument("this database is not a cluster member")
        actions: dict[str, tuple[Callable[..., None], range]] = {
            "add": (node.add_member, range(2, 3)),  # type: ignore[attr-defined]
            "remove": (node.remove_member, range(1, 2)),  # type: ignore[attr-defined]
            "transfer": (node.transfer_leadership, range(2)),  # type: ignore[attr-defined]
        }
        if action not in actions:
            raise InvalidArgument(f"cluster change is add, remove or transfer, not {action!r}")
        call, counts = actions[action]
        if len(args) not in counts:
            raise InvalidArgument(f"wrong number of arguments for cluster {action}")
        call(*args)

    @property
    def recovery_notes(self) -> list[str]:
        """What recovery repaired at open (a truncated torn tail, …)."""
        return list(self._node.recovery_notes)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise Closed("the database is closed")

    # -- tables -------------------------------------------------------------------

    def table(self, name: str) -> Table:
        """A handle on table ``name``; the table is created by its first write."""
        self._check_open()
        handle = self._handles.get(name)
        if handle is None:
            name = check_table(name, self.config.limits)
            with self._handles_lock:
                handle = self._handles.get(name)
                if handle is None:
                    handle = Table(self, self._node.store.table_state(name))
                    self._handles[name] = handle
        return handle

    def tables(self) -> list[str]:
        """Names of the existing tables, sorted."""
        self._check_open()
        return self._node.store.tables()

    def drop_table(self, name: str) -> bool:
        """Delete a table and all its keys (one revision); returns whether it existed."""
        name = check_table(name, self.config.limits)
        existed = name in self._node.store.tables()
        self._commit(Batch((DropTable(name),)))
        return existed

    # -- transactions ---------------------------------------------------------------

    def txn(self, compares: Iterable[Compare], ops: Iterable[Op]) -> TxnResult:
        """Apply ``ops`` all-or-nothing if every compare holds, as one revision.

        Raises ``ConditionFailed`` (naming the failing compare) otherwise.
        """
        batch = self._txn_batch(compares, ops)
        return _txn_result(batch, self._commit(batch))

    async def atxn(self, compares: Iterable[Compare], ops: Iterable[Op]) -> TxnResult:
        """``txn`` for asyncio."""
        batch = self._txn_batch(compares, ops)
        return _txn_result(batch, await self._acommit(batch))

    def commit_checked(self, ops: Sequence[Op], *, entries: bool = False) -> TxnResult:
        """``txn((), ops)`` for ops that are already checked: the server's hot path.

        The caller guarantees what ``txn`` would otherwise verify: every op is
        a ``Put``/``Merge``/``Delete``/``DropTable`` built from
        ``check_table``/``check_key`` names and ``freeze``-d values (and a
        positive int ``ttl_ms``). Size limits are still enforced. The result
        carries one entry per op only when ``entries`` is true, else none.
        Durability and atomicity are those of ``txn``.
        """
        if not ops:
            raise InvalidArgument("a transaction needs at least one operation")
        batch = Batch(tuple(ops))
        result = self._commit(batch)
        return _txn_result(batch, result) if entries else TxnResult(result.revision)

    async def acommit_checked(self, ops: Sequence[Op], *, entries: bool = False) -> TxnResult:
        """``commit_checked`` for asyncio."""
        if not ops:
            raise InvalidArgument("a transaction needs at least one operation")
        batch = Batch(tuple(ops))
        result = await self._acommit(batch)
        return _txn_result(batch, result) if entries else TxnResult(result.revision)

    def transaction(self) -> Transaction:
        """An optimistic read-write transaction (``with db.transaction() as tx:``).

        Reads inside record the revision they saw; on exit the writes commit
        only if none of those keys changed since (else ``ConditionFailed``),
        so the block is serializable. An exception in the block discards it.
        """
        self._check_open()
        return Transaction(self)

    def _txn_batch(self, compares: Iterable[Compare], ops: Iterable[Op]) -> Batch:
        limits = self.config.limits
        checked_compares = []
        for c in compares:
            if not isinstance(c, Compare):
                raise InvalidArgument(f"not a Compare: {c!r}")
            if c.target not in COMPARE_TARGETS or c.op not in COMPARE_OPS:
                raise InvalidArgument(f"unknown compare target or operator in {c!r}")
            operand = c.operand
            if c.target == "exists":
                if not isinstance(operand, bool) or c.op not in ("=", "!="):
                    raise InvalidArgument("an exists compare takes = or != and True or False")
            elif c.target != "value" and (
                isinstance(operand, bool) or not isinstance(operand, int)
            ):
                raise InvalidArgument(f"a {c.target} compare takes an int, not {operand!r}")
            else:
                operand = freeze(operand, limits)
            checked_compares.append(
                Compare(
                    check_table(c.table, limits), check_key(c.key, limits), c.target, c.op, operand
                )
            )
        checked_ops: list[Op] = []
        for op in ops:
            if isinstance(op, Put):
                if op.ttl_ms is not None and (not isinstance(op.ttl_ms, int) or op.ttl_ms <= 0):
                    raise InvalidArgument(f"ttl_ms must be a positive int in {op!r}")
                checked_ops.append(
                    Put(
                        check_table(op.table, limits),
                        check_key(op.key, limits),
                        freeze(op.value, limits),
                        op.ttl_ms,
                        bool(op.keep_ttl),
                    )
                )
            elif isinstance(op, Merge):
                if op.ttl_ms is not None and (not isinstance(op.ttl_ms, int) or op.ttl_ms <= 0):
                    raise InvalidArgument(f"ttl_ms must be a positive int in {op!r}")
                checked_ops.append(
                    Merge(
                        check_table(op.table, limits),
                        check_key(op.key, limits),
                        freeze(op.patch, limits),
                        op.ttl_ms,
                    )
                )
            elif isinstance(op, Delete):
                checked_ops.append(Delete(check_table(op.table, limits), check_key(op.key, limits)))
            elif isinstance(op, DropTable):
                checked_ops.append(DropTable(check_table(op.table, limits)))
            else:
                raise InvalidArgument(f"not a transaction operation: {op!r}")
        if not checked_ops:
            raise InvalidArgument("a transaction needs at least one operation")
        return Batch(tuple(checked_ops), tuple(checked_compares))

    # -- committing -----------------------------------------------------------------

    def _encode(self, batch: Batch) -> bytes:
        """Encode and enforce the size limits before anything is written."""
        limits = self.config.limits
        body = encode_body(batch)
        if len(body) > limits.max_value_bytes:
            for op in batch.ops:
                if isinstance(op, Put | Merge):
                    size = len(pack(op.value if isinstance(op, Put) else op.patch))
                    if size > limits.max_value_bytes:
                        raise TooLarge(
                            f"value for {op.table}:{op.key} is {size} bytes encoded; "
                            f"the limit is {limits.max_value_bytes}"
                        )
        if len(body) > limits.max_batch_bytes:
            raise TooLarge(
                f"batch is {len(body)} bytes encoded; the limit is {limits.max_batch_bytes}"
            )
        return body

    def _commit(self, batch: Batch) -> ApplyResult:
        self._check_open()
        result = self._node.commit(batch, self._encode(batch))
        if result.error is not None:
            raise result.error
        return result

    async def _acommit(self, batch: Batch) -> ApplyResult:
        self._check_open()
        result = await self._node.acommit(batch, self._encode(batch))
        if result.error is not None:
            raise result.error
        return result

    # -- watching -------------------------------------------------------------------

    @overload
    def watch(
        self,
        table: str | None = None,
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
        table: str | None = None,
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
        table: str | None = None,
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
        """Watch committed changes as ``Event``s with diffs; ``table=None``: every table.

        - ``key`` or ``prefix`` narrow the watch (neither: the whole table);
        - ``start_revision`` replays history from that revision (every event
          with a revision >= it), then goes live with no gap and no
          duplicate; it raises ``Compacted(oldest_available)`` when the
          history window (``history_revisions``/``history_bytes``, rebuilt
          from the snapshot and log after a restart) no longer reaches it.
          Default: only changes committed after this call;
        - ``prev_value=False``: events carry ``prev_value=None`` (``diff``
          still describes the change); ``skip_noop=True`` leaves out puts
          and merges that did not change the value;
        - ``progress_interval`` (seconds): an idle watch yields
          ``Progress(revision)``, meaning every matching event up to that
          revision was delivered;
        - ``callback``: call it with every item instead of iterating, on the
          database's one dispatcher thread (never the writer's; callbacks
          run one at a time, so keep them short); ``on_error`` gets the
          exception that ends the watch (``Lagged``, ``Closed``, or the
          callback's own).

        Per watch, revisions strictly increase, a transaction's events arrive
        together, and no matching event is skipped. A slow watch never slows
        writers: when its queue (``watch_queue`` events) overflows it ends
        with ``Lagged(last_revision)``; watch again from ``last_revision + 1``.
        Iterate with ``for``/``async for``, or ``watch.batches()`` for one
        ``EventBatch`` per revision; ``close()`` it (or use ``with``).
        """
        return self._watch(
            table,
            key,
            prefix=prefix,
            start_revision=start_revision,
            prev_value=prev_value,
            skip_noop=skip_noop,
            progress_interval=progress_interval,
            callback=callback,
            on_error=on_error,
        )

    def _watch(
        self,
        table: str | None,
        key: str | None,
        *,
        prefix: str | None,
        start_revision: int | None,
        prev_value: bool,
        skip_noop: bool,
        progress_interval: float | None,
        callback: Callable[[Any], object] | None,
        on_error: Callable[[BaseException], object] | None,
    ) -> Watch[Any]:
        self._check_open()
        limits = self.config.limits
        return open_watch(
            self._node.watch_hub,
            table=None if table is None else check_table(table, limits),
            key=None if key is None else check_key(key, limits),
            prefix=prefix,
            start_revision=start_revision,
            prev_value=prev_value,
            skip_noop=skip_noop,
            progress_interval=progress_interval,
            callback=callback,
            on_error=on_error,
        )

    # -- maintenance ----------------------------------------------------------------

    def snapshot(self) -> int:
        """Write a snapshot now; returns the log position it covers."""
        self._check_open()
        return self._node.snapshot()

    def capture(self) -> StoreImage:
        """A consistent image of every table at one revision, for backups.

        Costs one shallow copy of each table's dict under the store lock
        (records and values are immutable); encode it off the lock.
        """
        self._check_open()
        store = self._node.store
        with store.lock:
            return store.capture()

    def sweep_expired(self) -> int:
        """Delete expired keys now (the background sweeper does it every second)."""
        self._check_open()
        return self._node.sweep_expired()

    def stats(self) -> dict[str, Any]:
        """Revision, backend, durability, pipeline counters and job health."""
        self._check_open()
        stats = self._node.stats()
        stats["tables"] = {name: len(self.table(name)) for name in self.tables()}
        return stats

    def close(self) -> None:
        """Make every acknowledged write durable and release the folder; idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._handles_lock:
            for handle in self._handles.values():
                handle._rows = _CLOSED_ROWS
            # Handles point back here: forget them so the closed database is freed
            # at once (a handle the caller still holds keeps raising Closed).
            self._handles.clear()
        self._node.close()


def _txn_result(batch: Batch, result: ApplyResult) -> TxnResult:
    entries: list[Entry | None] = []
    for op, record in zip(batch.ops, result.outcomes, strict=True):
        key = getattr(op, "key", None)
        entries.append(None if record is None or key is None else _entry(key, record))
    return TxnResult(result.revision, entries)


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

    def put(self, table: str, key: str, value: Any, *, ttl: float | None = None) -> None:
        self._check()
        limits = self._db.config.limits
        table, key = check_table(table, limits), check_key(key, limits)
        frozen = freeze(value, limits)
        self._ops.append(Put(table, key, frozen, _ttl_ms(ttl)))
        self._local[(table, key)] = frozen

    def merge(self, table: str, key: str, patch: Any) -> None:
        self._check()
        limits = self._db.config.limits
        table, key = check_table(table, limits), check_key(key, limits)
        frozen = freeze(patch, limits)
        self._ops.append(Merge(table, key, frozen))
        where = (table, key)
        if where in self._local:
            base = self._local[where]
            self._local[where] = merge_patch(None if base is _MISSING else base, frozen)

    def delete(self, table: str, key: str) -> None:
        self._check()
        limits = self._db.config.limits
        table, key = check_table(table, limits), check_key(key, limits)
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


def open(
    target: str | os.PathLike[str] = "data",
    *,
    config: Config | None = None,
    backend: Backend | None = None,
    files: FileLayer | None = None,
    jobs: bool = True,
    **settings: Any,
) -> Database:
    """Open (creating if needed) the database at ``target``.

    ``target`` is a folder (the ``log`` backend) or a URL: ``sqlite:///file.db``,
    ``postgresql://user@host/db``, ``s3://bucket/prefix?endpoint_url=…``,
    ``memory://``.
    Settings (``durability="always"``, ``interval_ms=…``, …) override
    ``config``. ``files`` swaps the log backend's file layer (tests simulate
    power loss with ``CrashFiles``); ``jobs=False`` runs no background jobs.
    Raises ``Locked`` if another process has the folder open.
    """
    config = config or Config()
    if settings:
        config = config.replace(**settings)
    if backend is None:
        if files is not None:
            backend = LogBackend(target, config, files)
        else:
            backend = open_backend(target, config)
    return Database(Node(backend, config, jobs=jobs))


def open_cluster(
    folder: str | os.PathLike[str],
    cluster: ClusterConfig,
    *,
    config: Config | None = None,
    jobs: bool = True,
    **settings: Any,
) -> Database:
    """Open this process's member of a Raft cluster, its data in ``folder``.

    Writes return once a majority holds them durably and they are applied
    here. Handle reads are this replica's state: call ``db.barrier()``
    first for a linearizable read. See :mod:`amber.replication.cluster`.
    """
    from .replication.cluster import ClusterNode  # noqa: PLC0415 (PySyncObj: clusters only)

    config = config or Config()
    if settings:
        config = config.replace(**settings)
    return Database(ClusterNode(folder, config, cluster, jobs=jobs))


__all__ = [
    "Compare",
    "Database",
    "Delete",
    "DropTable",
    "Entry",
    "Expire",
    "Merge",
    "Page",
    "Put",
    "Table",
    "Transaction",
    "TxnResult",
    "open",
    "open_cluster",
]
