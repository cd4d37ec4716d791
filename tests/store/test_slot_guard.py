"""A sharded group's slot guard inside ``Store.apply``: metadata, refusals, evictions.

The guard is what makes a reshard safe against writes checked before a slot
froze or moved: it runs in log order on every member, so these tests drive
the store directly with the batches such a member would apply.
"""

from __future__ import annotations

from typing import Any

from amber.cluster.slots import SLOTS, Member, ShardState, SlotMap, key_slot
from amber.errors import Unavailable
from amber.model import freeze
from amber.model.names import join_key
from amber.store.batch import (
    Batch,
    Delete,
    DropTable,
    Evict,
    Merge,
    Put,
    SetMeta,
    Update,
    decode_record,
    encode_body,
    stamp,
)
from amber.store.state import Store


def run(store: Store, *ops: Any, now: int = 1000) -> Any:
    with store.lock:
        return store.apply(store.applied_seq + 1, Batch(tuple(ops), (), now))


def slot(table: str, key: str) -> int:
    return key_slot(join_key(table, key).encode())


def key_in(lo: int, hi: int, avoid: tuple[str, ...] = ()) -> str:
    """A key of table ``t`` whose slot is in ``lo``-``hi``."""
    return next(
        k for k in (f"k{i}" for i in range(100_000)) if lo <= slot("t", k) <= hi and k not in avoid
    )


HALF = SLOTS // 2
MEMBERS = {"g1": (Member("n1", "h", 1, "master"),), "g2": (Member("n2", "h", 2, "master"),)}


def state(
    group: str = "g1", *, frozen: range = range(0), importing: range = range(0), epoch: int = 2
) -> dict[str, Any]:
    """g1 owns the low half, g2 the high half."""
    slot_map = SlotMap(epoch, ((0, HALF - 1, "g1"), (HALF, SLOTS - 1, "g2")), MEMBERS)
    return ShardState(group, slot_map, frozenset(frozen), frozenset(importing)).to_doc()


def test_without_a_map_nothing_is_guarded() -> None:
    store = Store()
    high = key_in(HALF, SLOTS - 1)
    assert run(store, Put("t", high, 1)).error is None
    assert store.guard is None and store.meta == {}


def test_meta_is_no_event_and_no_revision_but_arms_the_guard() -> None:
    store = Store()
    low, high = key_in(0, HALF - 1), key_in(HALF, SLOTS - 1)
    assert run(store, Put("t", low, 1)).revision == 1
    result = run(store, SetMeta("slots", state()))
    assert result.error is None and result.changes == [] and result.revision == 1
    assert store.meta["slots"]["group"] == "g1" and store.guard is not None
    refused = run(store, Put("t", high, 2))
    assert isinstance(refused.error, Unavailable) and "not served" in str(refused.error)
    assert store.table_state("t").rows.get(high) is None and store.revision == 1
    for op in (
        Merge("t", high, freeze({"a": 1})),
        Delete("t", high),
        Update("t", high, "incr", (1,)),
    ):
        assert isinstance(run(store, op).error, Unavailable)
    # one foreign key refuses the whole batch: nothing half-applied
    both = run(store, Put("t", low, 3), Put("t", high, 3))
    assert isinstance(both.error, Unavailable)
    assert store.table_state("t").rows[low][0] == 1
    assert run(store, Put("t", low, 4)).error is None


def test_frozen_slots_refuse_writes_and_table_drops() -> None:
    store = Store()
    low = key_in(0, 99)
    run(store, Put("t", low, 1))
    run(store, SetMeta("slots", state(frozen=range(100))))
    assert isinstance(run(store, Put("t", low, 2)).error, Unavailable)
    assert isinstance(run(store, DropTable("t")).error, Unavailable)
    other = key_in(100, HALF - 1)
    assert run(store, Put("t", other, 1)).error is None  # an unfrozen owned slot


def test_importing_slots_take_the_movers_copies() -> None:
    store = Store()
    high = key_in(HALF, HALF + 99)
    run(store, SetMeta("slots", state(importing=range(HALF, HALF + 100))))
    assert run(store, Put("t", high, 1, expires_at_ms=5000)).error is None
    assert store.table_state("t").rows[high][4] == 5000


def test_evict_drops_only_keys_of_slots_not_owned_silently() -> None:
    store = Store()
    low, high = key_in(0, HALF - 1), key_in(HALF, SLOTS - 1)
    run(store, Put("t", low, 1), Put("t", high, 1))
    assert run(store, Evict("t", high)).error is None
    assert high in store.table_state("t").rows  # no map: never evicts
    run(store, SetMeta("slots", state()))
    revision = store.revision
    result = run(store, Evict("t", low), Evict("t", high))
    assert result.error is None and result.changes == [] and store.revision == revision
    rows = store.table_state("t").rows
    assert low in rows and high not in rows
    assert list(store.table_state("t").keys) == [low]


def test_meta_survives_snapshots_but_not_backups() -> None:
    store = Store()
    low = key_in(0, HALF - 1)
    run(store, Put("t", low, 1), SetMeta("slots", state(frozen=range(5, 9))))
    with store.lock:
        image = store.capture()
    restored = Store()
    restored.load_image(Store.image_chunks(image), image.seq)
    assert restored.meta == store.meta and restored.guard is not None
    assert restored.guard.frozen
    bare = Store()
    bare.load_image(Store.image_chunks(image, meta=False), image.seq)
    assert bare.meta == {} and bare.guard is None
    assert bare.table_state("t").rows[low][0] == 1


def test_ops_round_trip_the_log_encoding() -> None:
    batch = Batch((SetMeta("slots", state()), Evict("t", "k")), (), 7)
    decoded = decode_record(stamp(7, encode_body(batch)))
    assert decoded.ops[1] == Evict("t", "k")
    meta = decoded.ops[0]
    assert isinstance(meta, SetMeta) and meta.name == "slots"
    assert ShardState.from_doc(meta.value) == ShardState.from_doc(state())


def test_shard_state_doc_round_trips() -> None:
    doc = state("g2", frozen=range(HALF, HALF + 3), importing=range(10, 12), epoch=9)
    again = ShardState.from_doc(doc)
    assert again.to_doc() == doc
    assert again.frozen == frozenset(range(HALF, HALF + 3))
    assert again.owned() == frozenset(range(HALF, SLOTS))
