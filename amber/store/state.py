"""The store: Amber's deterministic state machine.

``Store.apply(seq, batch)`` is the only way state changes. Given the same
batches in the same order, every replica and every replay reaches the same
state: ``apply`` reads no clock (TTL expiry is judged by the batch's own
``time_ms``) and no randomness.

State is a set of tables; a table maps keys to **records**, immutable tuples
``(value, create_revision, mod_revision, version, expires_at_ms)`` (etcd's
model). Records and values (frozen containers) are never mutated after they
are stored, so readers take them without a lock and without a copy, and a
snapshot is a shallow copy of each table's dict.

A batch that changes at least one key gets the next **revision**; one that
fails its compares, or changes nothing, does not.

Reads:

- a single-key read (``TableState.rows.get``) is lock-free and sees each key
  atomically;
- multi-key reads (scan, count, snapshot capture) hold ``Store.lock`` — the
  same lock ``apply`` runs under — so they see whole batches only.
"""

from __future__ import annotations

import heapq
import operator
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NamedTuple, TypeAlias, cast

from sortedcontainers import SortedList

from ..cluster.slots import ShardState, SlotGuard
from ..config import Limits
from ..errors import (
    AmberError,
    ConditionFailed,
    Corrupted,
    InvalidArgument,
    TooLarge,
    Unavailable,
)
from ..model import json_equal, merge_patch, pack, unpack
from ..model.values import FrozenDict
from .batch import (
    Batch,
    Collect,
    Compare,
    Delete,
    DropTable,
    Evict,
    Expire,
    Lww,
    Merge,
    Op,
    Put,
    SetMeta,
    Update,
)
from .lww import ZERO, LwwMeta, Stamp, as_stamp, expiry, join, merge_delta
from .updates import ABSENT, UNCHANGED, UPDATES, Refused

#: ``(value, create_revision, mod_revision, version, expires_at_ms | None)``
Record: TypeAlias = tuple[Any, int, int, int, int | None]
VALUE: Final = 0
CREATE: Final = 1
MOD: Final = 2
VERSION: Final = 3
EXPIRES: Final = 4

ChangeKind = Literal["put", "merge", "delete", "expire"]
SNAPSHOT_FORMAT = 1
_CHUNK_ROWS = 2048
_NO_FIELDS: Final = FrozenDict()


class TableState:
    """One table's rows (a dict, for reads) and key order (for scans).

    The store holds it strongly only while the table exists; a dropped or
    never-written table's state lives only as long as a handle holds it.
    """

    __slots__ = ("__weakref__", "exists", "keys", "name", "rows", "stamps", "ttl_keys")

    def __init__(self, name: str) -> None:
        self.name = name
        self.rows: dict[str, Record] = {}
        #: Eventual tables: each key's last-writer-wins stamps (:mod:`.lww`),
        #: also for deleted keys (tombstones: in here, not in ``rows``).
        self.stamps: dict[str, LwwMeta] = {}
        self.keys: SortedList[str] = SortedList()
        #: Created by a write and not dropped since (a handle may exist before).
        self.exists = False
        #: Records carrying an expiry: lets count() skip expiry checks when 0.
        self.ttl_keys = 0


@dataclass(slots=True)
class Change:
    """One key's change in an applied batch, for watchers and callers."""

    table: str
    key: str
    kind: ChangeKind
    record: Record | None
    prev: Record | None
    #: An eventual table's change: the stamp of the write that made it (origin, HLC).
    stamp: Stamp | None = None


class Updated(NamedTuple):
    """The outcome of an ``Update`` op: the key's record after it and the command's answer."""

    #: The key's record after the op (the unchanged one if it refused; None: absent).
    record: Record | None
    #: What the update function answered (None if it refused).
    result: Any
    #: Why it changed nothing (a Redis error reply's text), or None.
    error: str | None


@dataclass(slots=True)
class ApplyResult:
    """What applying one batch did."""

    seq: int
    #: The store's revision after the batch (the batch's own if it changed anything).
    revision: int
    changes: list[Change]
    #: Per op: the new record for put/merge, the previous one for delete, an
    #: :class:`Updated` for an update, else None.
    outcomes: list[Record | Updated | None]
    #: Why the batch changed nothing (a failed compare, a merge grown too large).
    error: AmberError | None = None
    #: An eventual store's batch: the stamp of each write it made (put, merge,
    #: delete, update; not replicated states), in op order (what ``AMBER.TXN``
    #: answers with ``"stamps": true``).
    stamps: list[Stamp] = field(default_factory=list)


@dataclass(slots=True)
class StoreImage:
    """A consistent, immutable view of the whole store, for snapshots."""

    seq: int
    revision: int
    tables: list[tuple[str, dict[str, Record]]]
    #: The store's replicated metadata (``SetMeta``), e.g. a group's slot map.
    meta: dict[str, Any] = field(default_factory=dict)
    #: Eventual tables' LWW stamps (tombstones included), per table.
    stamps: list[tuple[str, dict[str, LwwMeta]]] = field(default_factory=list)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``.

    ``None`` when there is none (the prefix is all U+10FFFF). Keys order by
    code point, which is also UTF-8 byte order.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars[-1])
        if last < 0x10FFFF:
            chars[-1] = chr(last + 1)
            return "".join(chars)
        chars.pop()
    return None


def live(record: Record | None, now_ms: int) -> bool:
    """Whether a record is visible at ``now_ms`` (present and not expired)."""
    if record is None:
        return False
    expires = record[EXPIRES]
    return expires is None or expires > now_ms


_ORDER: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _ordered(a: Any, op: str, b: Any) -> bool:
    """Order numbers with numbers and strings with strings; anything else is false."""
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    numeric = (int, float)
    comparable = (isinstance(a, numeric) and isinstance(b, numeric)) or (
        isinstance(a, str) and isinstance(b, str)
    )
    return comparable and bool(_ORDER[op](a, b))


def compare_holds(compare: Compare, record: Record | None) -> bool:
    """Evaluate one compare against a key's live record (``None``: absent)."""
    op, operand = compare.op, compare.operand
    target = compare.target
    if target == "exists":
        present = record is not None
        return present == bool(operand) if op == "=" else present != bool(operand)
    if target == "value":
        if record is None:
            return op == "!="
        if op == "=":
            return json_equal(record[VALUE], operand)
        if op == "!=":
            return not json_equal(record[VALUE], operand)
        return _ordered(record[VALUE], op, operand)
    index = {"version": VERSION, "mod_revision": MOD, "create_revision": CREATE}[target]
    number = record[index] if record is not None else 0
    if op == "=":
        return bool(number == operand)
    if op == "!=":
        return bool(number != operand)
    return _ordered(number, op, operand)


class _Staging:
    """A batch's pending changes, so all ops see each other and failure is free."""

    __slots__ = ("changes", "cleared", "exists", "meta", "now", "records", "stamps", "store")

    def __init__(self, store: Store, now: int) -> None:
        self.store = store
        self.now = now
        self.meta: dict[str, Any] = {}
        self.stamps: dict[tuple[str, str], LwwMeta | None] = {}
        self.records: dict[tuple[str, str], Record | None] = {}
        self.cleared: set[str] = set()
        self.exists: dict[str, bool] = {}
        self.changes: list[Change] = []

    def current(self, table: str, key: str) -> Record | None:
        """The key's record as this batch sees it, expired or not."""
        staged = self.records.get((table, key), self)
        if staged is not self:
            return staged  # type: ignore[return-value]
        if table in self.cleared:
            return None
        state = self.store._tables.get(table)
        return state.rows.get(key) if state is not None else None

    def stamp(self, table: str, key: str) -> LwwMeta | None:
        """The key's LWW stamps as this batch sees them (None: never written eventually)."""
        staged = self.stamps.get((table, key), self)
        if staged is not self:
            return staged  # type: ignore[return-value]
        state = self.store._tables.get(table)
        return state.stamps.get(key) if state is not None else None

    def live(self, table: str, key: str) -> Record | None:
        """The key's live record; an expired one is removed here, as an event."""
        record = self.current(table, key)
        if record is None or live(record, self.now):
            return record
        self.records[(table, key)] = None
        self.changes.append(Change(table, key, "expire", None, record))
        return None

    def stage(  # noqa: PLR0917 - private, called positionally in the hot path
        self,
        table: str,
        key: str,
        kind: ChangeKind,
        record: Record | None,
        prev: Record | None,
        stamp: Stamp | None = None,
    ) -> None:
        self.records[(table, key)] = record
        if record is not None:
            self.exists[table] = True
        self.changes.append(Change(table, key, kind, record, prev, stamp))

    def drop(self, table: str) -> None:
        state = self.store._tables.get(table)
        keys: set[str] = set()
        if state is not None and table not in self.cleared:
            keys.update(state.rows)
        keys.update(k for (t, k) in self.records if t == table)
        for key in sorted(keys):
            record = self.current(table, key)
            if record is None:
                continue
            kind: ChangeKind = "delete" if live(record, self.now) else "expire"
            self.changes.append(Change(table, key, kind, None, record))
        for staged_key in [tk for tk in self.records if tk[0] == table]:
            del self.records[staged_key]
        self.cleared.add(table)
        self.exists[table] = False


class Store:
    """Tables of revisioned records; see the module doc for the guarantees."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        #: Held by apply and by every multi-key read.
        self.lock = threading.Lock()
        self.revision = 0
        #: The log sequence number of the last batch applied.
        self.applied_seq = 0
        #: The tables that exist (written and not dropped since).
        self._tables: dict[str, TableState] = {}
        #: States of other tables that a handle still holds, so that a write
        #: creating the table fills the handle's object. Without this split
        #: every name ever read or dropped kept ~1 KB (a GET of a made-up
        #: table's key was enough).
        self._detached: weakref.WeakValueDictionary[str, TableState] = weakref.WeakValueDictionary()
        #: Guards moves between the two maps (``table_state`` runs without ``lock``).
        self._states_lock = threading.Lock()
        #: ``(expires_at, table, key, mod_revision)``; stale entries are skipped.
        self._expiry: list[tuple[int, str, str, int]] = []
        self._ttl_records = 0
        #: Replicated metadata, changed only by ``SetMeta`` ops (in log order).
        self.meta: dict[str, Any] = {}
        #: Bumped on every metadata change, so readers can cache what they derive.
        self.meta_version = 0
        #: While ``meta["slots"]`` exists (a sharded group): refuses writes to
        #: slots this group does not serve, at apply time.
        self.guard: SlotGuard | None = None
        #: Tables declared eventual (``meta["tables/<name>"]``): their writes
        #: go to the node's eventual store, never into this one.
        self.eventual_tables: frozenset[str] = frozenset()
        #: Eventual stores: every key whose LWW state changed, oldest change
        #: first, with its change number (``lww_seq``) — what replication
        #: sends on (tombstones included, which make no event).
        self.lww_seq = 0
        self.lww_changed: dict[tuple[str, str], int] = {}

    # -- tables ---------------------------------------------------------

    def table_state(self, name: str) -> TableState:
        """The state object for ``name``, created (not existing) on first ask.

        Handles keep this object for their lifetime: a drop clears it in place,
        and a later write fills the same object. The store keeps it only while
        the table exists, so the caller's reference is what keeps it otherwise.
        """
        state = self._tables.get(name)
        if state is not None:
            return state
        with self._states_lock:
            state = self._tables.get(name) or self._detached.get(name)
            if state is None:
                state = TableState(name)
                self._detached[name] = state
            return state

    def _adopt(self, name: str) -> TableState:
        """The state of a table being written: kept by the store from now on."""
        state = self._tables.get(name)
        if state is None:
            with self._states_lock:
                state = self._detached.pop(name, None) or TableState(name)
                self._tables[name] = state
        return state

    def _detach(self, state: TableState) -> None:
        """Stop keeping an emptied, dropped table's state (a handle may still hold it)."""
        with self._states_lock:
            if self._tables.get(state.name) is state:
                del self._tables[state.name]
                self._detached[state.name] = state

    def tables(self) -> list[str]:
        """Names of the tables that exist, sorted."""
        return sorted(name for name, state in list(self._tables.items()) if state.exists)

    def lww_since(self, seq: int, limit: int) -> list[tuple[int, str, str]]:
        """Up to ``limit`` keys whose LWW state changed after change ``seq``, oldest first;
        the caller holds the lock."""
        newer: list[tuple[int, str, str]] = []
        for (table, key), at in reversed(self.lww_changed.items()):
            if at <= seq:
                break
            newer.append((at, table, key))
        newer.reverse()
        return newer[:limit]

    # -- apply ----------------------------------------------------------

    def apply(self, seq: int, batch: Batch) -> ApplyResult:
        """Apply one sequenced batch; the caller holds ``self.lock``.

        Deterministic. On a failed compare, or a merge that grows a value
        over the limit, nothing changes and ``error`` says why.
        """
        now = batch.time_ms
        staging = _Staging(self, now)
        self.applied_seq = seq
        for compare in batch.compares:
            record = staging.current(compare.table, compare.key)
            if not live(record, now):
                record = None
            if not compare_holds(compare, record):
                return ApplyResult(seq, self.revision, [], [], _failed(compare))
        if self.guard is not None:
            refused = _refusal(self.guard, batch.ops)
            if refused is not None:
                return ApplyResult(seq, self.revision, [], [], Unavailable(refused))
        if self.eventual_tables:
            for op in batch.ops:
                name = getattr(op, "table", None)
                if name in self.eventual_tables and type(op) is not Expire:
                    error = InvalidArgument(
                        f"table {name!r} is eventual: its writes go to the eventual store"
                    )
                    return ApplyResult(seq, self.revision, [], [], error)
        revision = self.revision + 1
        outcomes: list[Record | Updated | None] = []
        try:
            for op in batch.ops:
                outcomes.append(self._stage(staging, op, revision, now))
        except InvalidArgument as exc:  # TooLarge, a table that cannot become eventual
            return ApplyResult(seq, self.revision, [], [], exc)
        if staging.changes:
            self._commit(staging)
            self.revision = revision
        elif staging.records or staging.meta or staging.stamps:  # no event, no revision
            self._commit(staging)
        elif staging.cleared:
            self._drop_empty(staging.cleared)
        return ApplyResult(seq, self.revision, staging.changes, outcomes)

    def _stage(self, staging: _Staging, op: Op, revision: int, now: int) -> Record | Updated | None:
        kind = type(op)
        if kind is Put or kind is Merge:
            # ``type(op) is`` and casts, not ``isinstance``: this runs for every write.
            written = cast("Put | Merge", op)
            prev = staging.live(written.table, written.key)
            if kind is Put:
                put = cast("Put", op)
                value = put.value
                if put.expires_at_ms is not None:
                    expires: int | None = put.expires_at_ms
                elif put.ttl_ms is not None:
                    expires = now + put.ttl_ms
                else:
                    expires = prev[EXPIRES] if (put.keep_ttl and prev is not None) else None
            else:
                merge = cast("Merge", op)
                value = merge_patch(prev[VALUE] if prev is not None else None, merge.patch)
                if len(pack(value)) > self.limits.max_value_bytes:
                    raise TooLarge(
                        f"merging into {merge.table}:{merge.key} would grow the value past "
                        f"{self.limits.max_value_bytes} bytes"
                    )
                if merge.ttl_ms is not None:
                    expires = now + merge.ttl_ms
                else:
                    expires = prev[EXPIRES] if prev is not None else None
            if prev is None:
                record: Record = (value, revision, revision, 1, expires)
            else:
                record = (value, prev[CREATE], revision, prev[VERSION] + 1, expires)
            staging.stage(
                written.table, written.key, "put" if kind is Put else "merge", record, prev
            )
            return record
        if kind is Update:
            return self._update(staging, cast("Update", op), revision)
        if kind is Delete:
            assert isinstance(op, Delete)
            prev = staging.live(op.table, op.key)
            if prev is not None:
                staging.stage(op.table, op.key, "delete", None, prev)
            return prev
        if kind is Expire:
            assert isinstance(op, Expire)
            current = staging.current(op.table, op.key)
            if current is not None and current[MOD] == op.mod_revision and not live(current, now):
                staging.stage(op.table, op.key, "expire", None, current)
                stamps = staging.stamp(op.table, op.key)
                if stamps is not None:  # an eventual key: the expiry is a stamped delete
                    expires = current[EXPIRES]
                    assert expires is not None  # not live: it has an expiry
                    after = join((current[VALUE], stamps, expires), expiry(expires))
                    staging.stamps[(op.table, op.key)] = after[1]
            return None
        if kind is Lww:
            outcome: Record | Updated | None = self._lww(staging, cast("Lww", op), revision, now)
            return outcome
        if kind is DropTable:
            assert isinstance(op, DropTable)
            staging.drop(op.table)
            return None
        if kind is SetMeta:
            assert isinstance(op, SetMeta)
            if op.if_absent and (op.name in staging.meta or op.name in self.meta):
                return None
            if op.name.startswith("tables/") and op.value == "eventual":
                table = op.name.removeprefix("tables/")
                found = self._tables.get(table)
                if found is not None and found.rows:
                    raise InvalidArgument(
                        f"table {table!r} already holds keys: its consistency is set when "
                        "it is created"
                    )
            staging.meta[op.name] = op.value
            return None
        if kind is Collect:
            assert isinstance(op, Collect)
            stamps = staging.stamp(op.table, op.key)
            tombstone = staging.current(op.table, op.key) is None
            if tombstone and stamps is not None and stamps.base == op.base and not stamps.fields:
                staging.stamps[(op.table, op.key)] = None
            return None
        assert isinstance(op, Evict)
        guard = self.guard
        owned = guard is None or guard.owns(op.table, op.key)
        if not owned and staging.current(op.table, op.key) is not None:
            staging.records[(op.table, op.key)] = None
        return None

    def _lww(self, staging: _Staging, op: Lww, revision: int, now: int) -> Any:
        """Join an eventual write into its key's state (see :mod:`.lww`); the outcome."""
        table, key = op.table, op.key
        prev = staging.current(table, key)
        stamps = staging.stamp(table, key) or LwwMeta(ZERO, _NO_FIELDS)
        current = (
            ABSENT if prev is None else prev[VALUE],
            stamps,
            None if prev is None else prev[EXPIRES],
        )
        if prev is not None and not live(prev, now):
            current = join(current, expiry(prev[EXPIRES] or now))
        value = current[0]
        answer: Any = None
        kind, payload, stamp = op.kind, op.payload, op.stamp
        if kind == "put":
            new_value, ttl_ms, keep_ttl, expires_at = payload
            expires = (
                expires_at
                if expires_at is not None
                else now + ttl_ms
                if ttl_ms is not None
                else current[2]
                if keep_ttl and value is not ABSENT
                else None
            )
            incoming: tuple[Any, LwwMeta, int | None] = (
                new_value,
                LwwMeta(stamp, _NO_FIELDS),
                expires,
            )
        elif kind == "merge":
            if isinstance(payload, dict):
                incoming = merge_delta(None if value is ABSENT else value, payload, stamp)
            else:
                incoming = (payload, LwwMeta(stamp, _NO_FIELDS), None)
        elif kind == "delete":
            incoming = (ABSENT, LwwMeta(stamp, _NO_FIELDS), None)
        elif kind == "update":
            fn, args = payload
            try:
                new, result = UPDATES[fn](value, *args)
                if new is not UNCHANGED and len(pack(new)) > self.limits.max_value_bytes:
                    raise Refused(f"the value would grow past {self.limits.max_value_bytes} bytes")
            except Refused as exc:
                return Updated(prev if value is not ABSENT else None, None, exc.reply_text())
            if new is UNCHANGED:
                return Updated(prev if value is not ABSENT else None, result, None)
            answer = result
            incoming = (new, LwwMeta(stamp, _NO_FIELDS), current[2])
        else:  # "state": another replica's whole state of the key
            present, remote, base, fields, expires = payload
            incoming = (
                remote if present else ABSENT,
                LwwMeta(as_stamp(base), FrozenDict({f: as_stamp(s) for f, s in fields.items()})),
                expires,
            )
            stamp = max((incoming[1].base, *incoming[1].fields.values()))
        after_value, after_stamps, after_expires = join(current, incoming)
        if after_stamps != current[1] or (after_value is ABSENT) != (current[0] is ABSENT):
            # Only a real change is recorded: replicas pull what changed, and an
            # unchanged state sent back would bounce between them forever.
            staging.stamps[(table, key)] = after_stamps
        before = prev if prev is not None and live(prev, now) else None
        if after_value is ABSENT:
            if before is not None:
                staging.stage(table, key, "delete", None, before, stamp)
            elif prev is not None:
                staging.records[(table, key)] = None  # expired, not swept yet
            return Updated(None, answer, None) if kind == "update" else before
        if (
            before is not None
            and before[EXPIRES] == after_expires
            and json_equal(before[VALUE], after_value)
        ):
            record = before  # lost to a newer write, or the same state again: no event
        else:
            if before is None:
                record = (after_value, revision, revision, 1, after_expires)
            else:
                record = (after_value, before[CREATE], revision, before[VERSION] + 1, after_expires)
            staging.stage(table, key, "merge" if kind == "merge" else "put", record, before, stamp)
        return Updated(record, answer, None) if kind == "update" else record

    def _update(self, staging: _Staging, op: Update, revision: int) -> Updated:
        prev = staging.live(op.table, op.key)
        try:
            value, result = UPDATES[op.fn](ABSENT if prev is None else prev[VALUE], *op.args)
            if value is not UNCHANGED and len(pack(value)) > self.limits.max_value_bytes:
                raise Refused(f"the value would grow past {self.limits.max_value_bytes} bytes")
        except Refused as exc:
            return Updated(prev, None, exc.reply_text())
        if value is UNCHANGED:
            return Updated(prev, result, None)
        if prev is None:
            record: Record = (value, revision, revision, 1, None)
        else:
            record = (value, prev[CREATE], revision, prev[VERSION] + 1, prev[EXPIRES])
        staging.stage(op.table, op.key, "put", record, prev)
        return Updated(record, result, None)

    def _drop_empty(self, names: set[str]) -> None:
        """Drop tables that hold no keys: no key changes, so no revision and no event.

        Before, such a drop did nothing and the table stayed listed and held
        forever: a redis-py run's ``FLUSHALL`` after ``DEL`` of a prefix's
        last key kept one state per prefix.
        """
        for name in names:
            state = self._tables.get(name)
            if state is not None and not state.rows:
                state.exists = False
                self._detach(state)

    def _set_meta(self, changes: dict[str, Any]) -> None:
        for name, value in changes.items():
            if value is None:
                self.meta.pop(name, None)
            else:
                self.meta[name] = value
        self.meta_version += 1
        self.eventual_tables = frozenset(
            name.removeprefix("tables/")
            for name, mode in self.meta.items()
            if name.startswith("tables/") and mode == "eventual"
        )
        if "slots" in changes:
            doc = self.meta.get("slots")
            self.guard = None if doc is None else ShardState.from_doc(doc).guard()

    def _commit(self, staging: _Staging) -> None:
        if staging.meta:
            self._set_meta(staging.meta)
        changed = self.lww_changed
        for (name, key), stamps in staging.stamps.items():
            self.lww_seq += 1
            changed.pop((name, key), None)  # re-inserted last: the dict stays in change order
            if stamps is not None:
                changed[(name, key)] = self.lww_seq
            if stamps is None:
                found = self._tables.get(name)
                if found is not None:
                    found.stamps.pop(key, None)
            else:
                adopted = self._adopt(name)
                adopted.stamps[key] = stamps
                adopted.exists = True
        tables = self._tables
        for name in staging.cleared:
            cleared = tables.get(name)
            if cleared is None:
                continue
            self._ttl_records -= cleared.ttl_keys
            cleared.rows.clear()
            cleared.keys.clear()
            cleared.ttl_keys = 0
        for (name, key), record in staging.records.items():
            found = tables.get(name)
            if found is None:
                if record is None:
                    continue  # nothing to delete in a table that does not exist
                found = self._adopt(name)
            state = found
            old = state.rows.get(key)
            if old is not None and old[EXPIRES] is not None:
                state.ttl_keys -= 1
                self._ttl_records -= 1
            if record is None:
                if old is not None:
                    del state.rows[key]
                    state.keys.remove(key)
                continue
            if old is None:
                state.keys.add(key)
            state.rows[key] = record
            expires = record[EXPIRES]
            if expires is not None:
                state.ttl_keys += 1
                self._ttl_records += 1
                heapq.heappush(self._expiry, (expires, name, key, record[MOD]))
        for name, exists in staging.exists.items():
            if exists:
                self._adopt(name).exists = True
            else:
                dropped = tables.get(name)
                if dropped is not None:
                    dropped.exists = False
                    if not dropped.rows:
                        self._detach(dropped)

    # -- TTL ------------------------------------------------------------

    def due_expirations(self, now_ms: int, limit: int = 1000) -> list[Expire]:
        """Expire ops for keys expired at ``now_ms``; the caller holds the lock."""
        if len(self._expiry) > 2 * self._ttl_records + 1024:
            self._rebuild_expiry()
        due: list[Expire] = []
        heap = self._expiry
        while heap and heap[0][0] <= now_ms and len(due) < limit:
            expires, name, key, mod = heapq.heappop(heap)
            state = self._tables.get(name)
            record = state.rows.get(key) if state is not None else None
            if record is not None and record[MOD] == mod and record[EXPIRES] == expires:
                due.append(Expire(name, key, mod))
        return due

    def _rebuild_expiry(self) -> None:
        self._expiry = [
            (record[EXPIRES], name, key, record[MOD])
            for name, state in self._tables.items()
            for key, record in state.rows.items()
            if record[EXPIRES] is not None
        ]
        heapq.heapify(self._expiry)

    # -- multi-key reads (caller holds the lock) --------------------------

    @staticmethod
    def _bounds(
        prefix: str | None, start: str | None, end: str | None
    ) -> tuple[str | None, str | None] | None:
        """``[low, high)`` for a prefix and/or range; ``None`` when empty."""
        low, high = start, end
        if prefix:
            low = prefix if low is None else max(low, prefix)
            bound = prefix_end(prefix)
            if bound is not None:
                high = bound if high is None else min(high, bound)
        if low is not None and high is not None and low >= high:
            return None
        return low, high

    def range_keys(
        self,
        table: str,
        *,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        reverse: bool = False,
    ) -> Iterator[str]:
        """Keys of ``table`` in ``[start, end)`` that start with ``prefix``."""
        state = self._tables.get(table)
        bounds = self._bounds(prefix, start, end)
        if state is None or bounds is None:
            return iter(())
        low, high = bounds
        return state.keys.irange(low, high, inclusive=(True, False), reverse=reverse)

    def scan(
        self,
        table: str,
        *,
        now_ms: int,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        limit: int | None = None,
        reverse: bool = False,
        where: Callable[[Any], bool] | None = None,
    ) -> tuple[list[tuple[str, Record]], bool]:
        """Live records in key order, at most ``limit``; and whether more match."""
        state = self._tables.get(table)
        if state is None:
            return [], False
        rows = state.rows
        items: list[tuple[str, Record]] = []
        for key in self.range_keys(table, prefix=prefix, start=start, end=end, reverse=reverse):
            record = rows[key]
            expires = record[EXPIRES]
            if expires is not None and expires <= now_ms:
                continue
            if where is not None and not where(record[VALUE]):
                continue
            if limit is not None and len(items) >= limit:
                return items, True
            items.append((key, record))
        return items, False

    def count(
        self,
        table: str,
        *,
        now_ms: int,
        prefix: str | None = None,
        start: str | None = None,
        end: str | None = None,
        where: Callable[[Any], bool] | None = None,
    ) -> int:
        """How many live records match; O(log n) without TTLs and filters."""
        state = self._tables.get(table)
        if state is None:
            return 0
        if where is None and state.ttl_keys == 0:
            bounds = self._bounds(prefix, start, end)
            if bounds is None:
                return 0
            low, high = bounds
            keys = state.keys
            first = keys.bisect_left(low) if low is not None else 0
            last = keys.bisect_left(high) if high is not None else len(keys)
            return max(0, last - first)
        items, _ = self.scan(table, now_ms=now_ms, prefix=prefix, start=start, end=end, where=where)
        return len(items)

    # -- snapshots --------------------------------------------------------

    def capture(self) -> StoreImage:
        """A consistent image of the store; the caller holds the lock.

        Costs one shallow dict copy per table: records are immutable.
        """
        return StoreImage(
            seq=self.applied_seq,
            revision=self.revision,
            tables=[
                (name, state.rows.copy()) for name, state in self._tables.items() if state.exists
            ],
            meta=dict(self.meta),
            stamps=[
                (name, state.stamps.copy()) for name, state in self._tables.items() if state.stamps
            ],
        )

    @staticmethod
    def image_chunks(image: StoreImage, *, meta: bool = True) -> Iterator[bytes]:
        """Encode an image as snapshot chunks (format in the module doc of log).

        Chunks: ``["h", format, seq, revision, [table names]]``, then
        ``["m", {name: value}]`` when there is metadata (and ``meta``: a
        backup leaves the group's slot map behind), ``["l", name, [keys],
        [[base, {field: stamp}]]]`` for eventual tables' stamps, then per table
        ``["t", name, [keys], [values], [create, mod, version, expires] * n]``.
        """
        yield pack(["h", SNAPSHOT_FORMAT, image.seq, image.revision, [n for n, _ in image.tables]])
        if meta and image.meta:
            yield pack(["m", image.meta])
        for name, stamps in image.stamps:
            marks = list(stamps.items())
            for i in range(0, len(marks), _CHUNK_ROWS):
                some = marks[i : i + _CHUNK_ROWS]
                encoded = [
                    [list(m.base), {f: list(s) for f, s in m.fields.items()}] for _, m in some
                ]
                yield pack(["l", name, [k for k, _ in some], encoded])
        for name, rows in image.tables:
            items = list(rows.items())
            for i in range(0, len(items), _CHUNK_ROWS):
                part = items[i : i + _CHUNK_ROWS]
                fields: list[int | None] = []
                for _, record in part:
                    fields.extend(record[1:])
                yield pack(["t", name, [k for k, _ in part], [r[VALUE] for _, r in part], fields])

    def load_image(self, chunks: Iterator[bytes], seq: int, source: str = "") -> None:
        """Replace the state with a snapshot's; only on a fresh store."""
        try:
            header = unpack(next(chunks))
        except StopIteration:
            raise Corrupted("snapshot has no header chunk", source) from None
        if header[0] != "h" or header[1] != SNAPSHOT_FORMAT:
            raise Corrupted(
                f"snapshot header {header[:2]!r} is not format {SNAPSHOT_FORMAT}", source
            )
        if header[2] != seq:
            raise Corrupted(f"snapshot says seq {header[2]} but is filed as {seq}", source)
        self.applied_seq = seq
        self.revision = header[3]
        for name in header[4]:
            self._adopt(name).exists = True
        pending: dict[str, list[str]] = {}
        for chunk in chunks:
            body = unpack(chunk)
            if body[0] == "m":
                self._set_meta(body[1])
                continue
            if body[0] == "l":
                _, name, keys, encoded = body
                stamps = self._adopt(name).stamps
                for key, (base, fields) in zip(keys, encoded, strict=True):
                    stamps[key] = LwwMeta(
                        as_stamp(base), FrozenDict({f: as_stamp(s) for f, s in fields.items()})
                    )
                    self.lww_seq += 1
                    self.lww_changed[(name, key)] = self.lww_seq
                continue
            if body[0] != "t":
                continue  # a kind a later issue adds (e.g. watch history); skip here
            _, name, keys, values, meta = body
            state = self._adopt(name)
            rows = state.rows
            for i, key in enumerate(keys):
                j = 4 * i
                expires = meta[j + 3]
                rows[key] = (values[i], meta[j], meta[j + 1], meta[j + 2], expires)
                if expires is not None:
                    state.ttl_keys += 1
                    self._ttl_records += 1
            pending.setdefault(name, []).extend(keys)
        for name, keys in pending.items():
            self._adopt(name).keys = SortedList(keys)
        self._rebuild_expiry()

    def reset(self) -> None:
        """Empty the store in place; the caller holds the lock.

        Before a replica installs a leader's snapshot. Table handles keep
        their ``TableState`` objects, so those are emptied, not replaced.
        """
        for state in list(self._tables.values()):
            state.rows.clear()
            state.stamps.clear()
            state.keys = SortedList()
            state.exists = False
            state.ttl_keys = 0
            self._detach(state)
        self.revision = 0
        self.applied_seq = 0
        self._expiry = []
        self._ttl_records = 0
        self.meta = {}
        self.meta_version += 1
        self.guard = None
        self.eventual_tables = frozenset()
        self.lww_changed = {}


def _refusal(guard: SlotGuard, ops: tuple[Op, ...]) -> str | None:
    """Why ``guard`` refuses a batch of a sharded group, or None (see ``SlotGuard``)."""
    for op in ops:
        kind = type(op)
        if kind is Put or kind is Merge or kind is Update or kind is Delete:
            written = cast("Put | Merge | Update | Delete", op)
            refused = guard.refusal(written.table, written.key)
            if refused is not None:
                return refused
        elif kind is DropTable and guard.frozen:
            return "a table cannot be dropped while slots move between groups; retry"
    return None


def _failed(compare: Compare) -> ConditionFailed:
    return ConditionFailed(
        f"condition failed on {compare.table}:{compare.key}: "
        f"{compare.target} {compare.op} {compare.operand!r} does not hold",
        compare.table,
        compare.key,
    )
