"""The watch core without threads or files: events, history, watchers, the hub.

A real (pure) ``Store`` produces the ``ApplyResult``s the node would publish.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from amber.config import Config
from amber.errors import Closed, Compacted, Lagged
from amber.model import freeze, pack
from amber.store.batch import Batch, Delete, DropTable, Merge, Put
from amber.store.state import ApplyResult, Change, Store
from amber.watch import Event, EventBatch, WatchFilter, WatchHub
from amber.watch.event import _UNSET, event_of
from amber.watch.history import CHUNK_PREFIX, History
from amber.watch.watcher import Watcher


class Rig:
    """A store and a hub, wired as the node wires them."""

    def __init__(self, **config: object) -> None:
        self.store = Store()
        self.hub = WatchHub(Config().replace(**config))

    def apply(self, *ops: object, now: int = 1000) -> ApplyResult:
        with self.store.lock:
            result = self.store.apply(self.store.applied_seq + 1, Batch(tuple(ops), (), now))  # type: ignore[arg-type]
        self.hub.publish(result)
        return result

    def put(self, table: str, key: str, value: object) -> ApplyResult:
        return self.apply(Put(table, key, freeze(value)))


def collect(watcher: Watcher) -> tuple[list[EventBatch], Exception | None]:
    """Every batch ready now, and the error that ended the watcher, if it did."""
    out = []
    try:
        while (batch := watcher.poll()) is not None:
            out.append(batch)
    except (Lagged, Closed) as exc:
        return out, exc
    return out, None


def drain(watcher: Watcher) -> list[EventBatch]:
    out, error = collect(watcher)
    assert error is None
    return out


def events(watcher: Watcher) -> list[tuple[int, str, str, str]]:
    return [(e.revision, e.table, e.key, e.type) for b in drain(watcher) for e in b.events]


# -- Event ----------------------------------------------------------------------------


def test_event_diff_is_lazy_cached_and_shared_by_without_prev() -> None:
    old, new = freeze({"a": 1, "b": 2}), freeze({"a": 1, "c": 3})
    event = Event(1, "t", "k", "put", new, old, True)
    assert event._diff is _UNSET  # nothing computed until asked
    assert event.diff == {"b": None, "c": 3}
    assert event.diff is event.diff
    bare = event.without_prev()
    assert bare.prev_value is None and bare.diff is event.diff
    assert bare == Event(1, "t", "k", "put", new, None)


def test_event_noop_and_deletes() -> None:
    value = freeze({"a": [1]})
    assert Event(1, "t", "k", "put", value, freeze({"a": [1]}), True).is_noop
    assert Event(1, "t", "k", "put", value, value, True).diff == {}
    assert not Event(1, "t", "k", "put", None, None, False).is_noop  # created as null
    assert Event(1, "t", "k", "put", None, None, True).is_noop
    assert not Event(1, "t", "k", "delete", None, value, True).is_noop
    assert Event(1, "t", "k", "delete", None, value, True).diff is None
    assert Event(1, "t", "k", "put", 5, None, False).diff == 5


# -- History ----------------------------------------------------------------------------


def entry(revision: int, n: int = 1) -> list[Change]:
    return [Change("t", f"k{i}", "put", (revision, 1, 1, 1, None), None) for i in range(n)]


def offered(revision: int, n: int = 1) -> list[Event]:
    return [event_of(revision, change) for change in entry(revision, n)]


def window(history: History) -> list[tuple[Any, ...]]:
    """The history as comparable tuples (decoded records are stand-ins)."""
    return [
        (e.revision, e.table, e.key, e.type, e.value, e.prev_value, e._had_prev, e.diff)
        for revision, changes in history.entries(10**9)
        for e in (event_of(revision, c) for c in changes)
    ]


def test_history_keeps_the_last_revisions_and_moves_the_floor() -> None:
    history = History(max_revisions=3, max_bytes=10**9)
    for revision in range(1, 6):
        history.append(revision, entry(revision), 10)
    assert len(history) == 3 and history.floor == 3 and history.bytes == 30
    part = history.since(4)
    assert part.revisions[part.start : part.stop] == [4, 5]


def test_history_bytes_bound_and_compaction_keep_old_slices_valid() -> None:
    history = History(max_revisions=10**9, max_bytes=100)
    held = history.since(1)
    for revision in range(1, 10_001):
        history.append(revision, entry(revision), 10)
    assert len(history) == 10 and history.floor == 9991 and history.bytes == 100
    assert held.revisions[held.start : held.stop] == []  # still empty, though compacted
    part = history.since(9995)
    assert part.revisions[part.start : part.stop] == list(range(9995, 10_001))
    assert len(part.revisions) < 10_000  # compaction replaced the lists


def test_history_snapshot_round_trip_shares_prev_values() -> None:
    rig = Rig(history_revisions=4)
    rig.put("t", "a", {"n": 0})
    for n in range(1, 6):
        rig.apply(Merge("t", "a", freeze({"n": n})), Put("t", "b", freeze([n])))
    rig.apply(Delete("t", "a"))
    rig.apply(DropTable("t"))
    chunks = list(rig.hub.image_chunks(rig.store.revision))
    assert all(bytes(c[:3]) == CHUNK_PREFIX for c in chunks)
    copy = History(4, 10**9)
    assert copy.load(rig.store.revision, list(chunks)) is None
    mine = rig.hub._history
    assert copy.floor == mine.floor == rig.store.revision - 3
    assert window(copy) == window(mine) and len(window(copy)) == 6
    # Only the first change of a key in the stream carries its prev inline.
    assert len(pack(list(chunks))) < 400


def test_history_chunks_stop_at_the_snapshot_revision() -> None:
    rig = Rig()
    for n in range(5):
        rig.put("t", "k", n)
    chunks = list(rig.hub.image_chunks(3))
    copy = History(100, 10**9)
    assert copy.load(3, chunks) is None
    assert [r for r, _ in copy.entries(99)] == [1, 2, 3] and copy.floor == 1


def test_history_refuses_chunks_that_do_not_match_the_snapshot() -> None:
    rig = Rig()
    for n in range(5):
        rig.put("t", "k", n)
    copy = History(100, 10**9)
    note = copy.load(4, list(rig.hub.image_chunks(5)))
    assert note is not None and "does not match" in note
    assert len(copy) == 0 and copy.floor == 5
    future = pack(["w", 99, 1, []])
    assert "format 99" in (copy.load(4, [future]) or "")
    assert "unreadable" in (copy.load(4, [b"\x94\xa1w\xc1"]) or "")
    assert copy.load(4, []) is None and copy.floor == 5


# -- Watcher ----------------------------------------------------------------------------------


def test_watcher_overflow_cuts_whole_revisions_then_reports_lagged() -> None:
    watcher = Watcher(WatchFilter("t"), limit=3)
    assert watcher.offer(1, offered(1, 2))
    assert watcher.offer(2, offered(2, 1))
    assert not watcher.offer(3, offered(3, 1))  # 4 > 3: cut before revision 3
    assert watcher.offer(4, offered(4, 1))  # ignored once ended
    got, error = collect(watcher)
    assert [b.revision for b in got] == [1, 2]
    assert isinstance(error, Lagged) and error.last_revision == 2


def test_watcher_takes_one_huge_revision_when_empty() -> None:
    watcher = Watcher(WatchFilter("t"), limit=3)
    assert watcher.offer(1, offered(1, 10))
    assert len(drain(watcher)[0].events) == 10


def test_watcher_arm_wakes_once_and_refuses_when_ready() -> None:
    watcher = Watcher(WatchFilter("t"), limit=10)
    woken: list[int] = []
    assert watcher.arm(lambda: woken.append(1))
    watcher.offer(1, offered(1))
    watcher.offer(2, offered(2))
    assert woken == [1]  # one wake-up for a burst, not one per revision
    assert not watcher.arm(lambda: woken.append(2))
    drain(watcher)
    watcher.end(Closed("bye"))
    assert not watcher.arm(lambda: None)


# -- Hub ---------------------------------------------------------------------------------------


def test_replay_then_live_without_gap_or_duplicate() -> None:
    rig = Rig()
    for n in range(5):
        rig.put("t", f"k{n}", n)
    watcher = rig.hub.subscribe(WatchFilter("t"), 3)
    rig.put("t", "k5", 5)
    assert [r for r, *_ in events(watcher)] == [3, 4, 5, 6]
    rig.put("t", "k6", 6)
    assert [r for r, *_ in events(watcher)] == [7]


def test_future_start_revision_waits_for_it() -> None:
    rig = Rig()
    watcher = rig.hub.subscribe(WatchFilter("t"), 3)
    for n in range(4):
        rig.put("t", "k", n)
    assert [r for r, *_ in events(watcher)] == [3, 4]


def test_compacted_carries_the_oldest_available_revision() -> None:
    rig = Rig(history_revisions=3)
    for n in range(10):
        rig.put("t", "k", n)
    with pytest.raises(Compacted) as info:
        rig.hub.subscribe(WatchFilter("t"), 7)
    assert (info.value.requested, info.value.oldest_available) == (7, 8)
    assert [r for r, *_ in events(rig.hub.subscribe(WatchFilter("t"), 8))] == [8, 9, 10]


def test_failed_and_noop_batches_publish_nothing() -> None:
    rig = Rig()
    rig.put("t", "k", 1)
    watcher = rig.hub.subscribe(WatchFilter(None))
    rig.apply(Delete("t", "absent"))
    assert rig.hub.revision == 1 and drain(watcher) == []


def test_transaction_events_come_as_one_batch_per_watcher() -> None:
    rig = Rig()
    both = rig.hub.subscribe(WatchFilter("t", prefix="a"))
    one = rig.hub.subscribe(WatchFilter("t", key="a2"))
    rig.apply(Put("t", "a1", 1), Put("t", "b", 2), Put("t", "a2", 3), Put("u", "a1", 4))
    [batch] = drain(both)
    assert batch.revision == 1 and [e.key for e in batch.events] == ["a1", "a2"]
    assert [e.key for b in drain(one) for e in b.events] == ["a2"]


def test_expire_and_drop_table_events() -> None:
    rig = Rig()
    watcher = rig.hub.subscribe(WatchFilter("t"))
    rig.apply(Put("t", "a", 1, ttl_ms=10), Put("t", "b", 2), now=1000)
    rig.apply(Put("t", "a", 3), now=2000)  # finds "a" expired: expire, then put
    rig.apply(DropTable("t"), now=3000)
    assert [(r, k, t) for r, _, k, t in events(watcher)] == [
        (1, "a", "put"),
        (1, "b", "put"),
        (2, "a", "expire"),
        (2, "a", "put"),
        (3, "a", "delete"),
        (3, "b", "delete"),
    ]


def test_lagged_watcher_is_unindexed_and_resume_misses_nothing() -> None:
    rig = Rig(watch_queue=5)
    watcher = rig.hub.subscribe(WatchFilter("t"))
    for n in range(20):
        rig.put("t", "k", n)
        rig.put("other", "k", n)
    assert rig.hub.stats()["watchers"] == 0 and rig.hub.lagged == 1
    got, error = collect(watcher)
    assert isinstance(error, Lagged)
    resumed = rig.hub.subscribe(WatchFilter("t"), error.last_revision + 1)
    values = [e.value for b in got for e in b.events]
    values += [e.value for b in drain(resumed) for e in b.events]
    assert values == list(range(20))


def test_many_watchers_each_see_exactly_their_events() -> None:
    rng = random.Random(7)
    rig = Rig()
    keys = ["", "a", "ab", "abc", "abd", "b", "ba", "bab", "c"]
    filters = [WatchFilter(None)]
    for table in ("t", "u"):
        filters.append(WatchFilter(table))
        for key in keys:
            filters.append(WatchFilter(table, key=key) if key else WatchFilter(table))
            filters.append(WatchFilter(table, prefix=key))
        filters.append(WatchFilter(None, prefix="ab"))
        filters.append(WatchFilter(None, key="b"))
    watchers = [rig.hub.subscribe(f) for f in filters]
    closed = watchers[5]
    applied: list[tuple[int, str, str]] = []
    for step in range(300):
        if step == 150:
            rig.hub.unsubscribe(closed)
        ops = [Put(rng.choice("tu"), rng.choice(keys[1:]), step) for _ in range(rng.randint(1, 3))]
        result = rig.apply(*ops)
        applied.extend((result.revision, c.table, c.key) for c in result.changes)
    for f, watcher in zip(filters, watchers, strict=True):
        got, error = collect(watcher)
        assert (error is not None) == (watcher is closed)
        seen = [(e.revision, e.table, e.key) for b in got for e in b.events]
        expected = [(r, t, k) for r, t, k in applied if f.matches(t, k)]
        if watcher is closed:
            expected = [x for x in expected if x[0] <= 150]
        assert seen == expected, f


def test_idle_revision_only_when_drained() -> None:
    rig = Rig()
    watcher = rig.hub.subscribe(WatchFilter("t"))
    rig.put("t", "k", 1)
    rig.put("u", "k", 1)
    assert rig.hub.idle_revision(watcher) is None
    drain(watcher)
    assert rig.hub.idle_revision(watcher) == 2


def test_close_ends_watchers_and_refuses_new_ones() -> None:
    rig = Rig()
    watcher = rig.hub.subscribe(WatchFilter("t"))
    rig.put("t", "k", 1)
    rig.hub.close()
    got, error = collect(watcher)
    assert len(got) == 1 and isinstance(error, Closed)
    with pytest.raises(Closed):
        rig.hub.subscribe(WatchFilter("t"))


def test_history_chunks_carry_only_the_newest_bytes() -> None:
    history = History(max_revisions=100, max_bytes=10**9)
    for revision in range(1, 11):
        history.append(revision, entry(revision), 10)
    copy = History(100, 10**9)
    assert copy.load(9, list(history.chunks(9, max_bytes=35))) is None
    assert [r for r, _ in copy.entries(99)] == [7, 8, 9] and copy.floor == 7
    assert copy.load(9, list(history.chunks(9, max_bytes=5))) is None
    assert len(copy) == 0 and copy.floor == 10  # nothing fits: watches start after it
    assert copy.load(10, list(history.chunks(10, max_bytes=1000))) is None
    assert copy.floor == 1 and len(copy) == 10


def test_history_chunks_when_the_newest_revision_alone_is_over_the_cap() -> None:
    # Issue #12 item 10: one value bigger than the snapshot's history budget
    # (SET of 9 MiB against 8 MiB) made chunks() index past the window's end.
    history = History(max_revisions=100, max_bytes=10**9)
    for revision in range(1, 4):
        history.append(revision, entry(revision), 10)
    history.append(4, entry(4), 500)
    copy = History(100, 10**9)
    assert copy.load(4, list(history.chunks(4, max_bytes=100))) is None
    assert len(copy) == 0 and copy.floor == 5  # none fits: watches resume after it
    history.append(5, entry(5), 10)  # a smaller write after it fits again
    assert copy.load(5, list(history.chunks(5, max_bytes=100))) is None
    assert [r for r, _ in copy.entries(99)] == [5] and copy.floor == 5


def test_hub_snapshots_a_value_bigger_than_the_snapshot_history() -> None:
    rig = Rig(snapshot_history_bytes=1024)
    rig.put("t", "small", 1)
    rig.put("t", "big", "x" * 4096)
    revision = rig.store.revision
    copy = History(100, 10**9)
    assert copy.load(revision, list(rig.hub.image_chunks(revision))) is None
    assert len(copy) == 0 and copy.floor == revision + 1
    assert len(rig.hub._history) == 2  # the live window still holds it


def test_snapshot_history_is_capped_by_snapshot_wal_bytes() -> None:
    rig = Rig(snapshot_wal_bytes=1000)
    for n in range(50):
        rig.put("t", "k", n)
    copy = History(10**6, 10**9)
    assert copy.load(50, list(rig.hub.image_chunks(50))) is None
    assert 1 < copy.floor < 50 and copy.bytes <= 1000
