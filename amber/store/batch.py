"""Batches: the only input that changes a store, and their log encoding.

A batch is ``compares`` (all must hold) and ``ops`` (applied all-or-nothing;
an ``Update`` whose function refuses the value it finds is a no-op inside
the batch, not a failure of it); the whole batch gets one revision.
Batches are what the write-ahead log and, later, the Raft log carry, so
their encoding is a persistent format:

``record = u64le time_ms ‖ msgpack([BATCH_FORMAT, compares, ops])``

- ``time_ms`` is stamped by the node when it sequences the batch; ``apply``
  judges TTL expiry by it, never by a clock, so every replica (and every
  replay) reaches the same state.
- a compare is ``[table, key, target, op, operand]``;
- an op is ``[code, table, key, ...]`` with codes fixed forever (new ops get
  new codes; a reader refuses codes it does not know rather than skip them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from ..errors import Corrupted, InvalidArgument
from ..model import pack, unpack
from .updates import UPDATES

BATCH_FORMAT = 1
_TIME = struct.Struct("<Q")

CompareTarget = Literal["value", "version", "mod_revision", "create_revision", "exists"]
CompareOp = Literal["=", "!=", "<", "<=", ">", ">="]
COMPARE_TARGETS: frozenset[str] = frozenset(
    ("value", "version", "mod_revision", "create_revision", "exists")
)
COMPARE_OPS: frozenset[str] = frozenset(("=", "!=", "<", "<=", ">", ">="))


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``key`` to ``value``; ``ttl_ms`` counts from the batch's time."""

    table: str
    key: str
    value: Any
    ttl_ms: int | None = None
    #: Keep the key's current expiry instead of clearing it (Redis KEEPTTL).
    keep_ttl: bool = False
    #: Expire at this Unix time in ms (Redis EXPIREAT/PXAT): stored exactly,
    #: not turned into a TTL and back with two clock reads. Wins over ``ttl_ms``.
    expires_at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Merge:
    """RFC 7396 merge ``patch`` into the key (created when absent).

    The key's expiry is kept unless ``ttl_ms`` is given.
    """

    table: str
    key: str
    patch: Any
    ttl_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """Set ``key`` to ``UPDATES[fn](current value, *args)``, computed when the batch applies.

    For read-modify-writes whose result is a pure function of the current
    value (INCR, APPEND, HINCRBY): no read, no compare, nothing to retry.
    A function that refuses the value changes nothing; the batch's other
    ops apply. The key keeps its expiry. See :mod:`amber.store.updates`.
    """

    table: str
    key: str
    fn: str
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``key``; a no-op when it is absent."""

    table: str
    key: str


@dataclass(frozen=True, slots=True)
class Expire:
    """Remove an expired key, but only if it was not rewritten since.

    The TTL sweeper proposes these with the ``mod_revision`` it saw, so a
    sweep racing a fresh put never deletes the new value.
    """

    table: str
    key: str
    mod_revision: int


@dataclass(frozen=True, slots=True)
class DropTable:
    """Delete every key of ``table`` and forget the table."""

    table: str


@dataclass(frozen=True, slots=True)
class SetMeta:
    """Set the store's replicated metadata ``name`` (``None``: remove it).

    Cluster state that must change in log order with the data — today the
    group's slot map (``"slots"``, see :class:`amber.cluster.slots.ShardState`).
    Not a key: no table, no event, no revision; kept in snapshots.
    """

    name: str
    value: Any
    #: Only if ``name`` is unset (first writer wins: a table's consistency is
    #: set once, by the batch that creates it).
    if_absent: bool = False


@dataclass(frozen=True, slots=True)
class Evict:
    """Drop ``key`` from a group that no longer serves its slot, silently.

    After a slot moved to another group the copies left behind are not
    changes of the data (the key lives on, elsewhere): no event, no
    revision. Applies only to a slot this group does not serve; elsewhere
    it is a no-op, so it can never remove live data.
    """

    table: str
    key: str


@dataclass(frozen=True, slots=True)
class Lww:
    """A write to an eventually consistent table, stamped by its origin's clock.

    Joined into the key's last-writer-wins state (:mod:`amber.store.lww`)
    when the batch applies. ``kind`` and ``payload``:

    - ``put``: ``[value, ttl_ms, keep_ttl, expires_at_ms]``;
    - ``merge``: the patch (each top-level member becomes its field's value);
    - ``delete``: None;
    - ``update``: ``[fn, args]``, an :class:`Update` computed on the current
      value, then put;
    - ``state``: ``[present, value, base, fields, expires]``, another
      replica's whole state of the key (replication).
    """

    table: str
    key: str
    kind: str
    payload: Any
    #: ``(physical_ms, counter, node)``; for ``state``, unused (the state has its own).
    stamp: tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Collect:
    """Forget a tombstone once every replica has seen it (``base``: its stamp)."""

    table: str
    key: str
    base: tuple[int, int, str]


Op: TypeAlias = Put | Merge | Update | Delete | Expire | DropTable | SetMeta | Evict | Lww | Collect


@dataclass(frozen=True, slots=True)
class Compare:
    """One condition of a batch, etcd-style.

    ``target`` is what is compared: ``value`` (JSON equality, or ordering of
    numbers/strings), ``version``, ``mod_revision``, ``create_revision`` (all 0
    for an absent key) or ``exists`` (operand ``True``/``False``, op ``=``).
    """

    table: str
    key: str
    target: CompareTarget
    op: CompareOp
    operand: Any


@dataclass(frozen=True, slots=True)
class Batch:
    """Compares that must all hold, then ops applied all-or-nothing."""

    ops: tuple[Op, ...]
    compares: tuple[Compare, ...] = ()
    #: Stamped by the node when sequenced; 0 until then.
    time_ms: int = 0


_PUT, _MERGE, _DELETE, _EXPIRE, _DROP, _PUT_AT, _UPDATE, _META, _EVICT = 1, 2, 3, 4, 5, 6, 7, 8, 9
_LWW, _COLLECT = 10, 11
_LWW_KINDS = frozenset(("put", "merge", "delete", "update", "state"))


def _encode_op(op: Op) -> list[Any]:
    if type(op) is Put:
        if op.expires_at_ms is not None:  # its own code: an older reader refuses, not drops it
            return [_PUT_AT, op.table, op.key, op.value, op.expires_at_ms]
        return [_PUT, op.table, op.key, op.value, op.ttl_ms, op.keep_ttl]
    if type(op) is Merge:
        return [_MERGE, op.table, op.key, op.patch, op.ttl_ms]
    if type(op) is Update:
        return [_UPDATE, op.table, op.key, op.fn, list(op.args)]
    if type(op) is Delete:
        return [_DELETE, op.table, op.key]
    if type(op) is Expire:
        return [_EXPIRE, op.table, op.key, op.mod_revision]
    if type(op) is DropTable:
        return [_DROP, op.table]
    if type(op) is SetMeta:
        return [_META, op.name, op.value, *((True,) if op.if_absent else ())]
    if type(op) is Evict:
        return [_EVICT, op.table, op.key]
    if type(op) is Lww:
        return [_LWW, op.table, op.key, op.kind, op.payload, list(op.stamp)]
    if type(op) is Collect:
        return [_COLLECT, op.table, op.key, list(op.base)]
    raise InvalidArgument(f"not a batch operation: {op!r}")


def _decode_op(raw: Any) -> Op:
    code = raw[0]
    if code == _PUT:
        return Put(raw[1], raw[2], raw[3], raw[4], raw[5])
    if code == _MERGE:
        return Merge(raw[1], raw[2], raw[3], raw[4])
    if code == _DELETE:
        return Delete(raw[1], raw[2])
    if code == _EXPIRE:
        return Expire(raw[1], raw[2], raw[3])
    if code == _DROP:
        return DropTable(raw[1])
    if code == _PUT_AT:
        return Put(raw[1], raw[2], raw[3], expires_at_ms=raw[4])
    if code == _META:
        return SetMeta(raw[1], raw[2], len(raw) > 3 and raw[3] is True)
    if code == _EVICT:
        return Evict(raw[1], raw[2])
    if code == _LWW:
        if raw[3] not in _LWW_KINDS:
            raise Corrupted(f"unknown eventual write kind {raw[3]!r} (written by a newer Amber?)")
        return Lww(raw[1], raw[2], raw[3], raw[4], tuple(raw[5]))
    if code == _COLLECT:
        return Collect(raw[1], raw[2], tuple(raw[3]))
    if code == _UPDATE:
        if raw[3] not in UPDATES:
            raise Corrupted(f"unknown update {raw[3]!r} (written by a newer Amber?)")
        return Update(raw[1], raw[2], raw[3], tuple(raw[4]))
    raise Corrupted(f"unknown batch operation code {code!r} (written by a newer Amber?)")


def encode_body(batch: Batch) -> bytes:
    """The batch without its time; encoded outside the sequencing lock."""
    return pack(
        [
            BATCH_FORMAT,
            [[c.table, c.key, c.target, c.op, c.operand] for c in batch.compares],
            [_encode_op(op) for op in batch.ops],
        ]
    )


def stamp(time_ms: int, body: bytes) -> bytes:
    """The log record: the sequencing time, then the body."""
    return _TIME.pack(time_ms) + body


def decode_record(record: bytes | memoryview) -> Batch:
    """Decode a log record; damage or an unknown format raises ``Corrupted``."""
    if len(record) < _TIME.size:
        raise Corrupted(f"batch record of {len(record)} bytes is too short")
    (time_ms,) = _TIME.unpack_from(record)
    try:
        fmt, compares, ops = unpack(memoryview(record)[_TIME.size :])
    except (ValueError, TypeError) as exc:
        raise Corrupted(f"batch record has an unexpected shape: {exc}") from exc
    if fmt != BATCH_FORMAT:
        raise Corrupted(f"batch format {fmt!r} is not supported (this Amber reads {BATCH_FORMAT})")
    try:
        return Batch(
            ops=tuple(_decode_op(raw) for raw in ops),
            compares=tuple(Compare(c[0], c[1], c[2], c[3], c[4]) for c in compares),
            time_ms=time_ms,
        )
    except (IndexError, TypeError) as exc:
        raise Corrupted(f"batch record has an unexpected shape: {exc}") from exc
