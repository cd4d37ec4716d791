"""The state machine on its own: batches in, records and changes out."""

from __future__ import annotations

import pytest

from amber.config import Limits
from amber.errors import ConditionFailed, TooLarge
from amber.model import freeze
from amber.store.batch import (
    Batch,
    Compare,
    Delete,
    DropTable,
    Expire,
    Merge,
    Put,
    decode_record,
    encode_body,
    stamp,
)
from amber.store.state import Store, prefix_end


def run(store: Store, *ops: object, compares: tuple[Compare, ...] = (), now: int = 1000):
    batch = Batch(tuple(ops), compares, now)  # type: ignore[arg-type]
    with store.lock:
        return store.apply(store.applied_seq + 1, batch)


def test_put_get_revisions_follow_etcd() -> None:
    store = Store()
    first = run(store, Put("t", "a", freeze({"n": 1})))
    assert first.revision == 1 and first.error is None
    second = run(store, Put("t", "a", freeze({"n": 2})))
    record = store.table_state("t").rows["a"]
    assert record == ({"n": 2}, 1, 2, 2, None)  # create stays, mod moves, version counts
    assert [c.kind for c in second.changes] == ["put"]
    assert second.changes[0].prev == ({"n": 1}, 1, 1, 1, None)


def test_merge_creates_and_patches() -> None:
    store = Store()
    run(store, Merge("t", "a", freeze({"x": 1, "y": {"z": 2}})))
    result = run(store, Merge("t", "a", freeze({"y": {"z": None, "w": 3}, "x": None})))
    assert store.table_state("t").rows["a"][0] == {"y": {"w": 3}}
    assert result.changes[0].kind == "merge"


def test_delete_absent_changes_nothing_and_keeps_revision() -> None:
    store = Store()
    run(store, Put("t", "a", 1))
    result = run(store, Delete("t", "missing"))
    assert result.changes == [] and result.revision == 1 and store.revision == 1
    assert result.outcomes == [None]


def test_failed_compare_changes_nothing() -> None:
    store = Store()
    run(store, Put("t", "a", 1))
    result = run(
        store,
        Put("t", "a", 2),
        Put("t", "b", 3),
        compares=(Compare("t", "a", "version", "=", 7),),
    )
    assert isinstance(result.error, ConditionFailed)
    assert result.error.key == "a"
    assert store.table_state("t").rows["a"][0] == 1
    assert "b" not in store.table_state("t").rows
    assert store.revision == 1


@pytest.mark.parametrize(
    ("compare", "holds"),
    [
        (Compare("t", "a", "exists", "=", True), True),
        (Compare("t", "zz", "exists", "=", False), True),
        (Compare("t", "a", "value", "=", {"n": 1}), True),
        (Compare("t", "a", "value", "=", {"n": True}), False),  # JSON: true is not 1
        (Compare("t", "a", "mod_revision", "=", 1), True),
        (Compare("t", "a", "create_revision", "<", 2), True),
        (Compare("t", "zz", "version", "=", 0), True),  # absent keys have version 0
        (Compare("t", "zz", "value", "!=", 1), True),
        (Compare("t", "zz", "value", "=", None), False),
    ],
)
def test_compare_targets(compare: Compare, holds: bool) -> None:
    store = Store()
    run(store, Put("t", "a", freeze({"n": 1})))
    result = run(store, Put("t", "b", 1), compares=(compare,))
    assert (result.error is None) is holds


def test_txn_is_one_revision_and_ops_see_each_other() -> None:
    store = Store()
    result = run(
        store, Put("t", "a", freeze({"x": 1})), Merge("t", "a", freeze({"y": 2})), Put("u", "b", 3)
    )
    assert result.revision == 1
    assert store.table_state("t").rows["a"] == ({"x": 1, "y": 2}, 1, 1, 2, None)
    assert {c.table for c in result.changes} == {"t", "u"}


def test_ttl_judged_by_batch_time_not_clock() -> None:
    store = Store()
    run(store, Put("t", "a", 1, ttl_ms=100), now=1000)
    assert store.table_state("t").rows["a"][4] == 1100
    # a later batch that touches the expired key first expires it (an event), then writes
    result = run(store, Merge("t", "a", freeze({"new": True})), now=2000)
    assert [c.kind for c in result.changes] == ["expire", "merge"]
    assert store.table_state("t").rows["a"][:4] == ({"new": True}, 2, 2, 1)


def test_expire_op_spares_rewritten_key() -> None:
    store = Store()
    run(store, Put("t", "a", 1, ttl_ms=10), now=1000)
    due = store.due_expirations(5000)
    assert due == [Expire("t", "a", 1)]
    run(store, Put("t", "a", 2), now=3000)  # rewritten, no ttl
    result = run(store, *due, now=5000)
    assert result.changes == [] and store.table_state("t").rows["a"][0] == 2


def test_keep_ttl() -> None:
    store = Store()
    run(store, Put("t", "a", 1, ttl_ms=500), now=1000)
    run(store, Put("t", "a", 2, keep_ttl=True), now=1100)
    assert store.table_state("t").rows["a"][4] == 1500
    run(store, Put("t", "a", 3), now=1200)
    assert store.table_state("t").rows["a"][4] is None


def test_absolute_expiry_is_kept_as_given_whatever_the_batch_time() -> None:
    store = Store()
    run(store, Put("t", "a", 1, expires_at_ms=33177117420001), now=1000)
    assert store.table_state("t").rows["a"][4] == 33177117420001
    run(store, Put("t", "b", 1, expires_at_ms=1500), now=1000)
    assert store.due_expirations(2000) == [Expire("t", "b", 2)]


def test_merge_past_value_limit_fails_whole_batch() -> None:
    store = Store(Limits(max_value_bytes=64))
    run(store, Put("t", "a", freeze({"s": "x" * 40})))
    result = run(store, Put("t", "b", 1), Merge("t", "a", freeze({"t": "y" * 40})))
    assert isinstance(result.error, TooLarge)
    assert "b" not in store.table_state("t").rows


def test_drop_table_emits_deletes_and_forgets() -> None:
    store = Store()
    run(store, Put("t", "a", 1), Put("t", "b", 2), Put("u", "c", 3))
    result = run(store, DropTable("t"), Put("t", "z", 9))
    assert sorted((c.kind, c.key) for c in result.changes) == [
        ("delete", "a"),
        ("delete", "b"),
        ("put", "z"),
    ]
    assert list(store.table_state("t").keys) == ["z"]
    assert store.tables() == ["t", "u"]
    run(store, DropTable("t"))
    assert store.tables() == ["u"]


def test_scan_ranges_prefix_reverse_limit() -> None:
    store = Store()
    keys = ["a", "ab", "abc", "abd", "b", "ba", "c"]
    run(store, *(Put("t", k, i) for i, k in enumerate(keys)))
    keys_of = lambda items: [k for k, _ in items]  # noqa: E731
    assert keys_of(store.scan("t", now_ms=0, prefix="ab")[0]) == ["ab", "abc", "abd"]
    assert keys_of(store.scan("t", now_ms=0, start="ab", end="b")[0]) == ["ab", "abc", "abd"]
    items, more = store.scan("t", now_ms=0, prefix="ab", reverse=True, limit=2)
    assert keys_of(items) == ["abd", "abc"] and more
    assert store.count("t", now_ms=0, prefix="ab") == 3
    assert store.count("t", now_ms=0, start="b") == 3
    assert store.count("t", now_ms=0, prefix="zz") == 0


def test_prefix_end() -> None:
    assert prefix_end("ab") == "ac"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None


def test_batch_codec_round_trip() -> None:
    batch = Batch(
        (
            Put("t", "k", freeze({"a": [1, 2.5, None]}), 10, True),
            Put("t", "k", "v", expires_at_ms=33177117420001),
            Merge("t", "k", freeze({"b": 1})),
            Delete("t", "x"),
            Expire("t", "y", 4),
            DropTable("u"),
        ),
        (Compare("t", "k", "version", ">", 2),),
    )
    decoded = decode_record(stamp(1234, encode_body(batch)))
    assert decoded == Batch(batch.ops, batch.compares, 1234)


def test_image_round_trip() -> None:
    store = Store()
    run(store, Put("t", "a", freeze({"x": [1]})), Put("t", "b", 2, ttl_ms=5000))
    run(store, Put("u", "c", 3), DropTable("u"))
    run(store, Put("v", f"k{0}", 0), *(Put("v", f"k{i}", i) for i in range(1, 5000)))
    with store.lock:
        image = store.capture()
    copy = Store()
    copy.load_image(Store.image_chunks(image), image.seq)
    assert copy.revision == store.revision and copy.applied_seq == store.applied_seq
    assert copy.tables() == ["t", "v"]
    for name in ("t", "v"):
        assert copy.table_state(name).rows == store.table_state(name).rows
        assert list(copy.table_state(name).keys) == list(store.table_state(name).keys)
    assert copy.due_expirations(10**12) == [Expire("t", "b", 1)]
