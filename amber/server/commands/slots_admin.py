"""``AMBER.SLOTS``: a group's side of moving hash slots between Raft groups.

Every change here is a ``SetMeta`` (or ``Evict``) batch through the group's
own log, so all its members switch at the same log position. The mover
(:mod:`amber.cluster.reshard`, ``amber cluster reshard``) drives one step
per slot range, and each step keeps one rule: **at every moment at most one
group serves a slot**.

1. target ``IMPORTING a b``: the target accepts the mover's copies
   (``LOAD``) for those slots; clients are still redirected to the source.
2. source ``FREEZE a b``: from this log position on, no write to the slots
   applies at the source (the store's slot guard refuses it, whenever it
   was checked) and no read is answered (``TRYAGAIN``: clients retry).
3. source ``EXPORT`` → target ``LOAD``: a copy of the frozen slots, exact
   (values and absolute expiry times).
4. target ``ASSIGN a b <target> EPOCH e``: the target serves the slots.
5. source ``ASSIGN a b <target> EPOCH e``: the source redirects them
   (``MOVED``); then ``EVICT a b`` drops its old copies.

Between 2 and 5 nobody serves the slots (a few round trips); they never
have two servers, so no read is answered stale and no write lands in a
group that has given the slot away. A group's owned slots change only by
``ASSIGN``, and only from frozen (giving) or importing (taking) slots, so
the map cannot be edited into losing data.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ...cluster.slots import SLOTS, ShardState, SlotMap, key_slot
from ...model import freeze, pack, unpack
from ...model.names import join_key
from ...store.batch import Evict, Put, SetMeta
from .cluster import RedisClusterView
from .registry import REGISTRY, CommandError, arity_error
from .replies import Simple
from .session import error_reply

command = REGISTRY.command
OK = Simple("OK")

#: At most this many bytes of records in one ``EXPORT`` page (and so one ``LOAD``).
PAGE_BYTES = 256 * 1024
#: At most this many keys evicted per batch.
EVICT_BATCH = 1000


def _range(args: list[bytes], at: int) -> tuple[int, int]:
    try:
        first, last = int(args[at]), int(args[at + 1])
    except (IndexError, ValueError):
        raise CommandError("slot range must be two integers: FIRST LAST") from None
    if not 0 <= first <= last < SLOTS:
        raise CommandError(f"slot range {first}-{last} is not within 0-{SLOTS - 1}")
    return first, last


def _epoch(args: list[bytes], at: int) -> int:
    if len(args) != at + 2 or args[at].upper() != b"EPOCH":
        raise CommandError("expected EPOCH <n>")
    try:
        return int(args[at + 1])
    except ValueError:
        raise CommandError("EPOCH must be an integer") from None


def _with_owner(slot_map: SlotMap, first: int, last: int, group: str, epoch: int) -> SlotMap:
    """``slot_map`` with ``first``-``last`` given to ``group``, at ``epoch``."""
    owners = [""] * SLOTS
    for a, b, g in slot_map.ranges:
        owners[a : b + 1] = [g] * (b - a + 1)
    owners[first : last + 1] = [group] * (last - first + 1)
    ranges: list[tuple[int, int, str]] = []
    for slot, owner in enumerate(owners):
        if not owner:
            continue
        if ranges and ranges[-1][2] == owner and ranges[-1][1] == slot - 1:
            ranges[-1] = (ranges[-1][0], slot, owner)
        else:
            ranges.append((slot, slot, owner))
    return SlotMap(epoch, tuple(ranges), slot_map.groups)


def keys_in(db: Any, first: int, last: int) -> list[tuple[str, str]]:
    """``(table, key)`` of every key whose slot is in ``first``-``last``, sorted.

    A copy of the store's tables (under its lock, shallow), then one CRC16
    per key: O(keys), so callers run it in a thread.
    """
    image = db.capture()
    found = []
    for table, rows in image.tables:
        for key in rows:
            if first <= key_slot(join_key(table, key).encode()) <= last:
                found.append((table, key))
    found.sort()
    return found


class _Exports:
    """The sorted keys of the last exported range, kept while the group's map is unchanged.

    The slots are frozen while they are exported, so their key set cannot
    grow; paging by the last key sent (not an index) also survives keys
    that expire meanwhile.
    """

    def __init__(self) -> None:
        self.key: tuple[int, int, int] | None = None
        self.keys: list[tuple[str, str]] = []


def _exports(view: RedisClusterView) -> _Exports:
    """This server's export cache (one per server: several can share a process)."""
    if view.exports is None:
        view.exports = _Exports()
    cache: _Exports = view.exports
    return cache


@command("AMBER.SLOTS", -2, "admin", group="cluster")
def amber_slots(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``AMBER.SLOTS GET | MAP json | IMPORTING a b | FREEZE a b | EXPORT a b [AFTER blob] |
    LOAD blob... | ASSIGN a b group EPOCH e | CANCEL a b | EVICT a b``.

    A group's side of a slot move (module doc); the mover (``amber cluster
    reshard``) calls these. Changes answer once applied on this member.
    """
    view: RedisClusterView | None = session.state.redis_cluster
    if view is None:
        raise CommandError("AMBER.SLOTS needs --cluster-mode redis")
    db = session.state.db
    sub = args[1].decode(errors="replace").upper()
    if sub == "GET":
        if len(args) != 2:
            raise arity_error("amber.slots|get")
        return json.dumps(view.shard_state(view.status()).to_doc()).encode()
    handlers = {
        "MAP": _map,
        "IMPORTING": _importing,
        "FREEZE": _freeze,
        "EXPORT": _export,
        "LOAD": _load,
        "ASSIGN": _assign,
        "CANCEL": _cancel,
        "EVICT": _evict,
    }
    handler = handlers.get(sub)
    if handler is None:
        raise CommandError(f"unknown AMBER.SLOTS subcommand {sub!r}; try {', '.join(handlers)}")

    async def run() -> Any:
        try:
            return await handler(view, db, args)
        except Exception as exc:
            return error_reply(exc)

    return asyncio.get_running_loop().create_task(run())


async def _set(
    db: Any,
    state: ShardState,
    *,
    slot_map: SlotMap | None = None,
    frozen: frozenset[int] | None = None,
    importing: frozenset[int] | None = None,
) -> None:
    """Write ``state`` with the given parts replaced, through the group's log."""
    new = ShardState(
        state.group,
        state.map if slot_map is None else slot_map,
        state.frozen if frozen is None else frozen,
        state.importing if importing is None else importing,
    )
    await db.acommit_checked([SetMeta("slots", new.to_doc())])


async def _ranged(
    view: RedisClusterView, db: Any, args: list[bytes], arity: int = 4
) -> tuple[ShardState, int, int, frozenset[int]]:
    """The common start of a subcommand on ``FIRST LAST``: checked, after a log barrier
    (so the state read is the group's latest), with the slots as a set."""
    if len(args) != arity:
        raise arity_error(f"amber.slots|{args[1].decode(errors='replace').lower()}")
    first, last = _range(args, 2)
    await db.abarrier()
    return _current(view), first, last, frozenset(range(first, last + 1))


def _current(view: RedisClusterView) -> ShardState:
    return view.shard_state(view.status())


async def _map(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Adopt a newer map (other groups' ranges and members); this group's own slots stay."""
    if len(args) != 3:
        raise arity_error("amber.slots|map")
    await db.abarrier()
    state = _current(view)
    try:
        incoming = ShardState.from_doc({**json.loads(args[2]), "frozen": [], "importing": []}).map
    except (ValueError, KeyError, TypeError) as exc:
        raise CommandError(f"AMBER.SLOTS MAP: not a shard map: {exc}") from None
    if incoming.epoch <= state.map.epoch:
        if incoming.epoch == state.map.epoch and incoming.ranges == state.map.ranges:
            return OK  # already adopted (a mover re-sending after a lost reply)
        raise CommandError(
            f"AMBER.SLOTS MAP: epoch {incoming.epoch} is not newer than {state.map.epoch}"
        )
    if state.group not in incoming.groups:
        raise CommandError(f"AMBER.SLOTS MAP: the map leaves out this group {state.group!r}")
    if incoming.slots_of(state.group) != state.map.slots_of(state.group):
        raise CommandError(
            "AMBER.SLOTS MAP: the map changes this group's own slots (only ASSIGN moves them)"
        )
    groups = dict(incoming.groups)
    groups[state.group] = state.map.groups[state.group]
    await _set(db, state, slot_map=SlotMap(incoming.epoch, incoming.ranges, groups))
    return OK


async def _importing(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Accept the mover's copies for slots another group owns; drop stale ones first."""
    state, first, last, wanted = await _ranged(view, db, args)
    if wanted & state.owned():
        raise CommandError(f"group {state.group!r} already owns some of slots {first}-{last}")
    if not wanted <= state.importing:
        await _set(db, state, importing=state.importing | wanted)
    await _evict_range(db, first, last)  # leftovers of an earlier, abandoned move
    return OK


async def _freeze(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Stop serving owned slots (no write applies, no read answers) until ASSIGN or CANCEL."""
    state, first, last, wanted = await _ranged(view, db, args)
    if not wanted <= state.owned():
        raise CommandError(f"group {state.group!r} does not own all of slots {first}-{last}")
    if not wanted <= state.frozen:
        await _set(db, state, frozen=state.frozen | wanted)
    return OK


async def _export(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """One page of the frozen slots' records: ``[next-cursor, record...]``; cursor "" = done.

    A record is msgpack ``[table, key, value, expires_at_ms | None]``.
    """
    if len(args) not in (4, 6) or (len(args) == 6 and args[4].upper() != b"AFTER"):
        raise arity_error("amber.slots|export")
    first, last = _range(args, 2)
    await db.abarrier()  # every write before the freeze is applied here
    state = _current(view)
    if not frozenset(range(first, last + 1)) <= state.frozen:
        raise CommandError(f"slots {first}-{last} are not frozen here: FREEZE them first")
    version = db.replicated_meta("slots")[0]
    cache = _exports(view)
    if cache.key != (version, first, last):
        cache.keys = await asyncio.to_thread(keys_in, db, first, last)
        cache.key = (version, first, last)
    keys = cache.keys
    start = 0
    if len(args) == 6:
        after = tuple(unpack(args[5]))
        lo, hi = 0, len(keys)
        while lo < hi:  # the first key after the cursor
            mid = (lo + hi) // 2
            if keys[mid] <= after:
                lo = mid + 1
            else:
                hi = mid
        start = lo
    now = int(time.time() * 1000)
    page: list[bytes] = [b""]
    size = 0
    i = start
    while i < len(keys) and size < PAGE_BYTES:
        table, key = keys[i]
        i += 1
        entry = db.table(table).entry(key)
        if entry is None or (entry.expires_at_ms is not None and entry.expires_at_ms <= now):
            continue
        record = pack([table, key, entry.value, entry.expires_at_ms])
        page.append(record)
        size += len(record)
    if i < len(keys):
        page[0] = pack(list(keys[i - 1]))
    return page


async def _load(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Write exported records into importing slots (their values and expiry times, exactly)."""
    if len(args) < 3:
        raise arity_error("amber.slots|load")
    state = _current(view)
    limits = db.config.limits
    ops = []
    for blob in args[2:]:
        try:
            table, key, value, expires = unpack(blob)
        except (ValueError, TypeError):
            raise CommandError(
                "AMBER.SLOTS LOAD: a record is [table, key, value, expires]"
            ) from None
        slot = key_slot(join_key(table, key).encode())
        if slot not in state.importing:
            raise CommandError(f"slot {slot} is not being imported here: IMPORTING it first")
        ops.append(Put(table, key, freeze(value, limits), expires_at_ms=expires))
    await db.acommit_checked(ops)
    return len(ops)


async def _assign(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Give ``a``-``b`` to ``group`` in this group's map at ``epoch``.

    Taking slots needs them importing here; giving them away needs them
    frozen here. Either way they leave the frozen/importing sets.
    """
    state, first, last, wanted = await _ranged(view, db, args, 7)
    group = args[4].decode(errors="replace")
    epoch = _epoch(args, 5)
    if group not in state.map.groups:
        raise CommandError(f"unknown group {group!r}: add it with AMBER.SLOTS MAP first")
    owned = state.owned()
    if group == state.group:
        if not wanted <= owned | state.importing:
            raise CommandError(f"slots {first}-{last} are not being imported here")
    elif wanted & owned and not wanted & owned <= state.frozen:
        raise CommandError(f"slots {first}-{last} must be frozen here before they are given away")
    current = frozenset(range(first, last + 1)) <= {
        s for a, b in state.map.slots_of(group) for s in range(a, b + 1)
    }
    if current and not wanted & (state.frozen | state.importing):
        return OK  # already done (a mover re-running a step)
    if epoch <= state.map.epoch:
        raise CommandError(f"EPOCH {epoch} is not newer than this group's {state.map.epoch}")
    await _set(
        db,
        state,
        slot_map=_with_owner(state.map, first, last, group, epoch),
        frozen=state.frozen - wanted,
        importing=state.importing - wanted,
    )
    return OK


async def _cancel(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Abandon a move: the slots leave the frozen and importing sets; ownership stays."""
    state, _, _, wanted = await _ranged(view, db, args)
    if wanted & (state.frozen | state.importing):
        await _set(db, state, frozen=state.frozen - wanted, importing=state.importing - wanted)
    return OK


async def _evict(view: RedisClusterView, db: Any, args: list[bytes]) -> Any:
    """Drop this group's copies of keys in slots it does not own; the number dropped."""
    state, first, last, wanted = await _ranged(view, db, args)
    if wanted & state.owned():
        raise CommandError(f"group {state.group!r} owns some of slots {first}-{last}: not evicted")
    return await _evict_range(db, first, last)


async def _evict_range(db: Any, first: int, last: int) -> int:
    keys = await asyncio.to_thread(keys_in, db, first, last)
    for i in range(0, len(keys), EVICT_BATCH):
        await db.acommit_checked([Evict(t, k) for t, k in keys[i : i + EVICT_BATCH]])
    return len(keys)
