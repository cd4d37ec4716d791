"""``Lww`` ops in ``Store.apply``: an eventual table's writes, joins, events, tombstones."""

from __future__ import annotations

from typing import Any

from amber.model import freeze
from amber.store.batch import Batch, Collect, Expire, Lww, decode_record, encode_body, stamp
from amber.store.state import Store

N1, N2 = "n1", "n2"


def run(store: Store, *ops: Any, now: int = 1000) -> Any:
    with store.lock:
        return store.apply(store.applied_seq + 1, Batch(tuple(ops), (), now))


def put(key: str, value: Any, at: tuple[int, int, str], ttl_ms: int | None = None) -> Lww:
    return Lww("p", key, "put", [freeze(value), ttl_ms, False, None], at)


def value(store: Store, key: str) -> Any:
    record = store.table_state("p").rows.get(key)
    return None if record is None else record[0]


def test_writes_join_and_the_newer_stamp_wins_in_any_order() -> None:
    a, b = Store(), Store()
    w1, w2 = put("k", {"v": 1}, (10, 0, N1)), put("k", {"v": 2}, (11, 0, N2))
    run(a, w1)
    run(a, w2)
    run(b, w2)
    result = run(b, w1)  # older: no change, no event, no revision
    assert value(a, "k") == value(b, "k") == {"v": 2}
    assert result.changes == [] and b.revision == 1
    assert a.table_state("p").stamps["k"] == b.table_state("p").stamps["k"]


def test_events_carry_the_writes_stamp() -> None:
    store = Store()
    result = run(store, put("k", 1, (10, 3, N1)))
    (change,) = result.changes
    assert change.kind == "put" and change.stamp == (10, 3, N1)
    merged = run(store, Lww("p", "k", "merge", freeze({"a": 1}), (12, 0, N2)))
    assert merged.changes[0].kind == "merge" and merged.changes[0].stamp == (12, 0, N2)
    assert value(store, "k") == {"a": 1}


def test_merges_of_different_fields_from_two_nodes_both_survive() -> None:
    store = Store()
    run(store, put("k", {"status": "away"}, (10, 0, N1)))
    run(store, Lww("p", "k", "merge", freeze({"status": "online"}), (12, 0, N1)))
    # n2 merged "device" at 11, before it saw n1's merge at 12: its state arrives
    remote = [
        "present",
        {"status": "away", "device": "phone"},
        [10, 0, N1],
        {"device": [11, 0, N2]},
        None,
    ]
    run(store, Lww("p", "k", "state", [True, *remote[1:]], (0, 0, "")))
    assert value(store, "k") == {"status": "online", "device": "phone"}


def test_delete_leaves_a_tombstone_that_beats_older_writes_until_collected() -> None:
    store = Store()
    run(store, put("k", 1, (10, 0, N1)))
    deleted = run(store, Lww("p", "k", "delete", None, (12, 0, N2)))
    assert deleted.changes[0].kind == "delete" and value(store, "k") is None
    run(store, put("k", 2, (11, 0, N1)))  # older than the delete: stays deleted
    assert value(store, "k") is None
    assert store.table_state("p").stamps["k"].base == (12, 0, N2)
    run(store, Collect("p", "k", (11, 0, N1)))  # not this tombstone's stamp: kept
    assert "k" in store.table_state("p").stamps
    run(store, Collect("p", "k", (12, 0, N2)))
    assert "k" not in store.table_state("p").stamps


def test_update_computes_on_the_current_value_and_answers() -> None:
    store = Store()
    run(store, put("c", "5", (10, 0, N1)))
    result = run(store, Lww("p", "c", "update", ["incr", [3]], (11, 0, N1)))
    assert result.outcomes[0].result == 8 and value(store, "c") == "8"


def test_expiry_is_a_stamped_delete() -> None:
    store = Store()
    run(store, put("k", 1, (10, 0, N1), ttl_ms=500), now=1000)
    record = store.table_state("p").rows["k"]
    assert record[4] == 1500
    run(store, Expire("p", "k", record[2]), now=2000)
    assert value(store, "k") is None
    assert store.table_state("p").stamps["k"].base == (1500, 0, "")
    run(store, put("k", 2, (1499, 0, N2)))  # written before it expired: stays expired
    assert value(store, "k") is None


def test_stamps_survive_snapshots_and_ops_the_log() -> None:
    store = Store()
    run(store, put("k", {"a": 1}, (10, 0, N1)), Lww("p", "gone", "delete", None, (11, 0, N2)))
    with store.lock:
        image = store.capture()
    again = Store()
    again.load_image(Store.image_chunks(image), image.seq)
    assert again.table_state("p").stamps == store.table_state("p").stamps
    assert "gone" not in again.table_state("p").rows and "gone" in again.table_state("p").stamps
    op = Lww("p", "k", "merge", freeze({"b": 2}), (12, 0, N1))
    decoded = decode_record(
        stamp(1, encode_body(Batch((op, Collect("p", "x", (1, 2, "n"))), (), 1)))
    )
    assert decoded.ops == (op, Collect("p", "x", (1, 2, "n")))
