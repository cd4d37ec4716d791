"""The embedded API: ``amber.open(path)`` → ``Database`` → ``Table``.

``Table`` (:mod:`amber.table`) and ``Transaction`` (:mod:`amber.transaction`)
are re-exported here. Guarantees, for every method of the three unless it
says otherwise:

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

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast, overload

from .config import Config
from .errors import Closed, InvalidArgument, TooLarge
from .model import check_key, check_table, freeze, pack
from .node.node import Node
from .node.replicator import ClusterStatus, StateMachine
from .persistence import Backend, FileLayer, LogBackend, open_backend
from .store.batch import (
    COMPARE_OPS,
    COMPARE_TARGETS,
    Batch,
    Compare,
    Delete,
    DropTable,
    Expire,
    Lww,
    Merge,
    Op,
    Put,
    SetMeta,
    Update,
    encode_body,
)
from .store.lww import ZERO
from .store.state import ApplyResult, Record, StoreImage, Updated
from .store.updates import check_update
from .table import _CLOSED_ROWS, Entry, Page, Table, _entry
from .transaction import Transaction, TxnResult, UpdateResult
from .watch import Event, Progress, Watch, open_watch

if TYPE_CHECKING:
    from .node.hlc import HybridClock
    from .replication.config import ClusterConfig

#: A table's consistency: ``strong`` (through the replicator: Raft in a
#: cluster) or ``eventual`` (this node's own log, last writer wins).
CONSISTENCIES = ("strong", "eventual")

#: Table handles ``Database.table`` keeps at hand (more are made again when asked).
MAX_CACHED_HANDLES = 1024


class Database:
    """An open database; create with ``amber.open``. A context manager."""

    def __init__(
        self,
        node: Node,
        *,
        eventual: Callable[[], Database] | None = None,
        clock: HybridClock | None = None,
    ) -> None:
        self._node = node
        self.config = node.config
        #: Set on a node's eventual store (see ``eventual_store``): every write
        #: becomes an ``Lww`` op stamped by this clock.
        self.clock = clock
        #: Opens this node's eventual store (None: eventual tables are refused).
        self._open_eventual = eventual
        self._eventual: Database | None = None
        self._eventual_lock = threading.Lock()
        #: An eventual store's identity for this run: replication cursors
        #: (``lww_changes``' numbers) are only meaningful within it.
        self.incarnation = os.urandom(8).hex()
        #: Stamped batches not applied yet: id -> their oldest stamp's ms.
        self._inflight: dict[int, int] = {}
        #: Recently used handles, so ``table(name)`` is a dict lookup; bounded
        #: (cleared past ``MAX_CACHED_HANDLES``) so made-up names cannot grow it.
        self._handles: dict[str, Table] = {}
        #: Every handle still alive, whoever holds it: ``close`` ends them all.
        self._live: weakref.WeakValueDictionary[str, Table] = weakref.WeakValueDictionary()
        self._handles_lock = threading.Lock()
        self._closed = False
        if node.store.eventual_tables:
            self.eventual_store()  # recover it now: its tables are served from the start

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"revision {self.revision}"
        return f"<amber.Database {self._node.replicator.name} {state}>"

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

    def replicated_meta(self, name: str) -> tuple[int, Any]:
        """``(version, value)`` of the store's replicated metadata ``name`` (None: unset).

        Set through the log (``SetMeta``), so every member of a group agrees
        at each log position; ``version`` changes with any metadata change,
        for callers that cache what they derive from it.
        """
        store = self._node.store
        return store.meta_version, store.meta.get(name)

    def cluster_status(self) -> ClusterStatus | None:
        """Members, leader, term, commit/applied index, lag; None when not in a cluster."""
        self._check_open()
        return self._node.cluster_status()

    def cluster_change(self, action: str, *args: str) -> None:
        """``add`` (id, host:port), ``remove`` (id or host:port) or ``transfer`` ([id]) a member.

        Blocks until the cluster confirms (``UnknownOutcome`` after the timeout).
        """
        self._check_open()
        members = self._node.membership()
        if members is None:
            raise InvalidArgument("this database is not a cluster member")
        actions: dict[str, tuple[Callable[..., None], range]] = {
            "add": (members.add_member, range(2, 3)),
            "remove": (members.remove_member, range(1, 2)),
            "transfer": (members.transfer_leadership, range(2)),
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

    def table(self, name: str, consistency: str | None = None) -> Table:
        """A handle on table ``name``; the table is created by its first write.

        ``consistency="eventual"`` declares the table eventual the first time
        (through the replicator: every member agrees) and refuses a table
        that is already strong, and vice versa; None takes it as it is. An
        eventual table's writes go to this node's own log and answer at
        once, even without a cluster quorum; replicas converge by last
        writer wins (``amber.store.lww``). Its handle belongs to the node's
        eventual store (``eventual_store``).
        """
        self._check_open()
        eventual = self._node.store.eventual_tables
        if consistency is not None or name in eventual:
            return self._moded_table(name, consistency)
        handle = self._handles.get(name)
        if handle is None:
            name = check_table(name, self.config.limits)
            with self._handles_lock:
                handle = self._live.get(name)
                if handle is None:
                    handle = Table(self, self._node.store.table_state(name))
                    self._live[name] = handle
                if len(self._handles) >= MAX_CACHED_HANDLES:
                    self._handles.clear()
                self._handles[name] = handle
        return handle

    def _moded_table(self, name: str, consistency: str | None) -> Table:
        name = check_table(name, self.config.limits)
        if consistency is not None and consistency not in CONSISTENCIES:
            raise InvalidArgument(
                f"consistency must be {' or '.join(CONSISTENCIES)}, not {consistency!r}"
            )
        mode = self.consistency(name)
        if consistency == "eventual" and mode == "strong":
            if self.clock is not None:
                raise InvalidArgument("an eventual store holds eventual tables only")
            if self._open_eventual is None:
                raise InvalidArgument(
                    "eventual tables need a data folder (or memory://) for this node's own log"
                )
            self._commit(Batch((SetMeta(f"tables/{name}", "eventual", if_absent=True),)))
            mode = self.consistency(name)
        if consistency is not None and consistency != mode:
            raise InvalidArgument(
                f"table {name!r} is {mode}: a table's consistency is set when it is created"
            )
        if mode == "eventual":
            return self.eventual_store().table(name)
        return self.table(name)

    def eventual_tables(self) -> frozenset[str]:
        """The tables declared eventual."""
        return self._node.store.eventual_tables

    def consistency(self, name: str) -> str:
        """``eventual`` if table ``name`` was declared eventual, else ``strong``."""
        return "eventual" if name in self._node.store.eventual_tables else "strong"

    def eventual_store(self) -> Database:
        """This node's store of eventual tables: its own log, stamped writes (opened on use)."""
        self._check_open()
        if self.clock is not None:
            return self
        store = self._eventual
        if store is None:
            if self._open_eventual is None:
                raise InvalidArgument("eventual tables need a data folder (or memory://)")
            with self._eventual_lock:
                if self._eventual is None:
                    self._eventual = self._open_eventual()
                store = self._eventual
        return store

    def lww_changes(
        self, after: int, limit: int, max_bytes: int = 1 << 20
    ) -> tuple[int, list[list[Any]]]:
        """An eventual store's key states changed after change number ``after``.

        ``(next, states)``: up to ``limit`` states, oldest change first, each
        ``[table, key, present, value, base, fields, expires]`` (tombstones
        too), at most about ``max_bytes`` of values (at least one state);
        ``next`` is the number to ask after next time. What replicas
        pull from each other (:mod:`amber.server.lww_sync`); a state sent is
        the key's current one, newer than the change that listed it, which
        a join takes just as well.
        """
        self._check_open()
        store = self._node.store
        out: list[list[Any]] = []
        size = 0
        last = after
        with store.lock:
            changed = store.lww_since(after, limit)
            for at, table, key in changed:
                if out and size >= max_bytes:
                    break  # the rest in the next page: a reply stays bounded
                last = at
                state = store.table_state(table)
                stamps = state.stamps.get(key)
                if stamps is None:
                    continue
                record = state.rows.get(key)
                fields = {f: list(s) for f, s in stamps.fields.items()}
                out.append(
                    [
                        table,
                        key,
                        record is not None,
                        None if record is None else record[0],
                        list(stamps.base),
                        fields,
                        None if record is None else record[4],
                    ]
                )
                size += len(pack(out[-1][3])) + len(key) + 64
        return last, out

    def lww_latest(self) -> tuple[int, int, str]:
        """An eventual store's greatest stamp (tombstones' and fields' too; ``ZERO`` if none):
        where its clock resumes after a restart."""
        self._check_open()
        store = self._node.store
        latest = ZERO
        with store.lock:
            for table, key in store.lww_changed:
                stamps = store.table_state(table).stamps.get(key)
                if stamps is not None:
                    latest = max(latest, stamps.base, *stamps.fields.values())
        return latest

    def lww_tombstones(self, before_ms: int) -> list[tuple[str, str, tuple[int, int, str]]]:
        """An eventual store's tombstones stamped before ``before_ms``: ``(table, key, stamp)``."""
        self._check_open()
        store = self._node.store
        found = []
        for table in store.tables():
            state = store.table_state(table)
            for key, stamps in list(state.stamps.items()):
                if stamps.base[0] < before_ms and not stamps.fields and key not in state.rows:
                    found.append((table, key, stamps.base))
        return found

    def stable_ms(self) -> int:
        """An eventual store's time before which every write of this node is applied here.

        Its clock, or the oldest stamp of a batch still on its way to the
        log: a stamp is taken before the write is durable, so "now" alone
        would claim writes that a reader could not see yet.
        """
        assert self.clock is not None
        now = self.clock.physical()
        with self._eventual_lock:
            return min([now, *self._inflight.values()])

    def tables(self) -> list[str]:
        """Names of the existing tables, sorted; a table declared eventual exists from then."""
        self._check_open()
        names = self._node.store.tables()
        eventual = self._node.store.eventual_tables
        if eventual:
            names = sorted({*names, *eventual})
        return names

    def drop_table(self, name: str) -> bool:
        """Delete a table and all its keys (one revision); returns whether it existed.

        An eventual table is dropped as a delete of every key it holds here
        (a tombstone each); its consistency stays.
        """
        name = check_table(name, self.config.limits)
        if self.consistency(name) == "eventual":
            return self.eventual_store().drop_table(name)
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
        batch = _checked_batch(ops)
        return _txn_result(batch, self._commit(batch), entries)

    async def acommit_checked(self, ops: Sequence[Op], *, entries: bool = False) -> TxnResult:
        """``commit_checked`` for asyncio."""
        batch = _checked_batch(ops)
        return _txn_result(batch, await self._acommit(batch), entries)

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
                at = op.expires_at_ms
                if at is not None and (
                    isinstance(at, bool) or not isinstance(at, int) or not 0 < at < 2**63
                ):
                    raise InvalidArgument(f"expires_at_ms must be a positive int in {op!r}")
                if at is not None and (op.ttl_ms is not None or op.keep_ttl):
                    raise InvalidArgument(f"expires_at_ms excludes ttl_ms and keep_ttl in {op!r}")
                checked_ops.append(
                    Put(
                        check_table(op.table, limits),
                        check_key(op.key, limits),
                        freeze(op.value, limits),
                        op.ttl_ms,
                        bool(op.keep_ttl),
                        at,
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
            elif isinstance(op, Update):
                why = check_update(op.fn, op.args)
                if why is not None:
                    raise InvalidArgument(why)
                args = tuple(freeze(arg, limits) for arg in op.args)
                checked_ops.append(
                    Update(check_table(op.table, limits), check_key(op.key, limits), op.fn, args)
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
        if self._node.store.eventual_tables or self.clock is not None:
            routed = self._route(batch)
            if routed is not None:
                return routed._commit(batch)
            if self.clock is not None:
                with self._stamping(batch) as stamped:
                    result = _committed(self._node.commit(stamped, self._encode(stamped)))
                    return _with_stamps(result, stamped)
        return _committed(self._node.commit(batch, self._encode(batch)))

    async def _acommit(self, batch: Batch) -> ApplyResult:
        self._check_open()
        if self._node.store.eventual_tables or self.clock is not None:
            routed = self._route(batch)
            if routed is not None:
                return await routed._acommit(batch)
            if self.clock is not None:
                with self._stamping(batch) as stamped:
                    result = _committed(await self._node.acommit(stamped, self._encode(stamped)))
                    return _with_stamps(result, stamped)
        return _committed(await self._node.acommit(batch, self._encode(batch)))

    @contextlib.contextmanager
    def _stamping(self, batch: Batch) -> Iterator[Batch]:
        """``batch`` stamped, counted in flight until it is applied (see ``stable_ms``)."""
        token = id(batch)
        with self._eventual_lock:
            assert self.clock is not None
            self._inflight[token] = self.clock.physical()
        try:
            yield self._stamped(batch)
        finally:
            with self._eventual_lock:
                self._inflight.pop(token, None)

    def _route(self, batch: Batch) -> Database | None:
        """The eventual store, if ``batch`` writes eventual tables (None: this database).

        One batch cannot write both kinds: they commit through different logs.
        """
        if self.clock is not None:
            return None
        eventual = self._node.store.eventual_tables
        names: set[str] = {t for op in batch.ops if (t := getattr(op, "table", None)) is not None}
        names.update(c.table for c in batch.compares)
        if not names & eventual:
            return None
        if not names <= eventual:
            raise InvalidArgument(
                f"tables {', '.join(sorted(names & eventual))} are eventual and "
                f"{', '.join(sorted(names - eventual))} strong: one transaction cannot write both"
            )
        return self.eventual_store()

    def _stamped(self, batch: Batch) -> Batch:
        """An eventual store's batch as ``Lww`` ops, each stamped now by this node's clock."""
        clock = self.clock
        if clock is None:
            return batch
        if batch.compares:
            raise InvalidArgument(
                "eventual tables take no conditions: compare-and-set needs one order of "
                "writes (use a strong table)"
            )
        ops: list[Op] = []
        for op in batch.ops:
            kind = type(op)
            if kind is Put:
                put = cast("Put", op)
                payload = [put.value, put.ttl_ms, put.keep_ttl, put.expires_at_ms]
                ops.append(Lww(put.table, put.key, "put", payload, clock.now()))
            elif kind is Merge:
                merge = cast("Merge", op)
                if merge.ttl_ms is not None:
                    raise InvalidArgument(
                        "a merge into an eventual table cannot set a TTL (the TTL belongs to "
                        "the document: put it with one)"
                    )
                ops.append(Lww(merge.table, merge.key, "merge", merge.patch, clock.now()))
            elif kind is Delete:
                delete = cast("Delete", op)
                ops.append(Lww(delete.table, delete.key, "delete", None, clock.now()))
            elif kind is Update:
                update = cast("Update", op)
                payload = [update.fn, list(update.args)]
                ops.append(Lww(update.table, update.key, "update", payload, clock.now()))
            elif kind is DropTable:
                table = cast("DropTable", op).table
                rows = self._node.store.table_state(table).rows
                ops.extend(Lww(table, k, "delete", None, clock.now()) for k in list(rows))
            else:  # Expire (the sweeper), Lww and Collect (replication): already in form
                ops.append(op)
        if not ops:
            ops.append(SetMeta("lww/noop", None))  # a drop of an empty table: nothing to do
        return Batch(tuple(ops), (), batch.time_ms)

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
        writers: when its queue (``watch_queue`` events or ``watch_queue_bytes``) overflows it ends
        with ``Lagged(last_revision)``; watch again from ``last_revision + 1``.
        Iterate with ``for``/``async for``, or ``watch.batches()`` for one
        ``EventBatch`` per revision; ``close()`` it (or use ``with``).
        """
        self._check_open()
        limits = self.config.limits
        source = self  # an eventual table's changes are in this node's eventual store
        if table is not None and self.consistency(table) == "eventual":
            source = self.eventual_store()
        return open_watch(
            source._node.watch_hub,
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
        if self._eventual is not None:
            self._eventual.close()
        with self._handles_lock:
            for handle in list(self._live.values()):
                handle._rows = _CLOSED_ROWS
            # Handles point back here: forget them so the closed database is freed
            # at once (a handle the caller still holds keeps raising Closed).
            self._handles.clear()
            self._live.clear()
        self._node.close()


def _checked_batch(ops: Sequence[Op]) -> Batch:
    if not ops:
        raise InvalidArgument("a transaction needs at least one operation")
    return Batch(tuple(ops))


def _committed(result: ApplyResult) -> ApplyResult:
    """The result of a committed batch; raises the error that failed one."""
    if result.error is not None:
        raise result.error
    return result


def _with_stamps(result: ApplyResult, stamped: Batch) -> ApplyResult:
    """``result`` with the stamps of the writes in ``stamped`` (an eventual store's batch)."""
    result.stamps = [op.stamp for op in stamped.ops if type(op) is Lww and op.kind != "state"]
    return result


def _txn_result(batch: Batch, result: ApplyResult, entries: bool = True) -> TxnResult:
    """The revision, with one entry per op unless ``entries`` is false."""
    if not entries:
        return TxnResult(result.revision, stamps=result.stamps)
    found: list[Entry | UpdateResult | None] = []
    for op, record in zip(batch.ops, result.outcomes, strict=True):
        key = getattr(op, "key", None)
        if type(record) is Updated:
            assert key is not None
            after = None if record.record is None else _entry(key, record.record)
            found.append(UpdateResult(after, record.result, record.error))
        elif record is None or key is None:
            found.append(None)
        else:
            found.append(_entry(key, cast("Record", record)))
    return TxnResult(result.revision, found, result.stamps)


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
    node = Node.local(backend, config, jobs=jobs)
    return Database(node, eventual=_eventual_opener(backend, config, "local", jobs=jobs))


def _eventual_opener(
    backend: Backend | str, config: Config, node_id: str, *, jobs: bool
) -> Callable[[], Database] | None:
    """How this node opens its store of eventual tables, or None where it has no place.

    A folder's is its ``eventual/`` subfolder (its own write-ahead log, the
    same durability); ``memory://`` keeps it in memory too. Other backends
    (SQLite, Postgres, S3) have no local folder for it: eventual tables are
    refused there.
    """
    from .node.hlc import HybridClock  # noqa: PLC0415
    from .persistence import MemoryBackend  # noqa: PLC0415

    if isinstance(backend, str):
        folder: str | None = os.path.join(backend, "eventual")
    elif isinstance(backend, LogBackend):
        folder = os.path.join(backend.folder, "eventual")
    elif isinstance(backend, MemoryBackend):
        folder = None
    else:
        return None

    def opened() -> Database:
        store: Backend = (
            LogBackend(folder, config) if folder is not None else MemoryBackend(config=config)
        )
        clock = HybridClock(node_id, max_skew_ms=config.max_clock_skew_ms)
        db = Database(Node.local(store, config, jobs=jobs), clock=clock)
        clock.restore(db.lww_latest())  # never below a stamp it already holds (hlc's doc)
        return db

    return opened


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
    from .replication.cluster import Raft  # noqa: PLC0415 (PySyncObj: clusters only)

    config = config or Config()
    if settings:
        config = config.replace(**settings)
    node = Node(Raft(StateMachine(config), folder, cluster), jobs=jobs)
    eventual = _eventual_opener(os.fspath(folder), config, cluster.node_id, jobs=jobs)
    return Database(node, eventual=eventual)


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
    "Update",
    "UpdateResult",
    "open",
    "open_cluster",
]
