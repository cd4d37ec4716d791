"""The history window's memory bound (issue #12.12): honest bytes, trimmed revisions freed.

Before, the bound counted packed values (a third to a twentieth of the Python
objects) and trimmed revisions stayed in the backing lists until 4096 of
them piled up: with the server's 512-change revisions, millions of changes.
"""

from __future__ import annotations

import gc
import tracemalloc
import weakref
from typing import Any

import pytest

from amber.config import Config
from amber.errors import Lagged
from amber.model import freeze
from amber.store.batch import Batch, Delete, Put
from amber.store.state import Change, Store
from amber.watch import WatchFilter, WatchHub
from amber.watch.history import History, estimate_bytes


class Value:
    """A stand-in value that a weak reference can watch."""


def revision_of(values: list[Any]) -> list[Change]:
    return [Change("t", f"k{i}", "put", (v, 1, 1, 1, None), None) for i, v in enumerate(values)]


def test_trimmed_revisions_are_released_long_before_4096_of_them() -> None:
    history = History(max_revisions=10**9, max_bytes=64_000)
    watched: list[weakref.ref[Value]] = []
    for revision in range(1, 201):
        values = [Value() for _ in range(512)]  # one coalesced pipeline's revision
        watched.append(weakref.ref(values[0]))
        history.append(revision, revision_of(values), 8_000)
    gc.collect()
    alive = sum(ref() is not None for ref in watched)
    # 8 revisions fit; trimmed ones wait at most until they add up to 1/8 of the bound.
    assert len(history) == 8
    assert alive <= 8 + 2, f"{alive} revisions still referenced"
    assert history.dead_bytes * 8 < history.max_bytes


def test_a_slice_held_by_a_replay_survives_the_release() -> None:
    history = History(max_revisions=10**9, max_bytes=10_000)
    for revision in range(1, 11):
        history.append(revision, revision_of([revision]), 1_000)
    held = history.since(1)
    for revision in range(11, 100):
        history.append(revision, revision_of([revision]), 1_000)
    assert held.revisions[held.start : held.stop] == list(range(1, 11))
    assert [c[0].record[0] for c in held.changes[held.start : held.stop]] == list(range(1, 11))  # type: ignore[index]


def _traced(build: Any) -> tuple[Any, int]:
    gc.collect()
    tracemalloc.start()
    try:
        built = build()
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return built, size


@pytest.mark.parametrize(
    "make",
    [
        lambda i: f"value-{i}",
        lambda i: "x" * 1000 + str(i),
        lambda i: freeze({"user": f"ada{i}", "age": i * 1000, "tags": ["x", "y"], "n": 1.5}),
        lambda i: freeze({f"k{j}": j * 1000 + i for j in range(50)}),
        lambda i: freeze([f"item-{i}-{j}" for j in range(100)]),
    ],
    ids=["short-str", "long-str", "doc", "wide-doc", "list"],
)
def test_the_estimate_is_what_the_objects_take(make: Any) -> None:
    """What a server's writes allocate per change, parsed fresh: the bound must not undercount it.

    (Packed sizes, the old estimate, were 3x-20x under; 5% is allocator detail.)
    """

    def build() -> list[Change]:
        changes = []
        for i in range(2000):
            key = "".join(["fo", "o"])  # a fresh key object per command, as parsed
            changes.append(Change("t", key, "put", (make(i), 1, 5000, 1000 + i, None), None))
        return changes

    changes, traced = _traced(build)
    estimate = estimate_bytes(changes)
    assert 0.95 * traced <= estimate <= 3 * traced, (traced, estimate)


def test_the_hub_counts_a_delete_of_an_old_value_but_not_an_overwrite_chain() -> None:
    store = Store()
    hub = WatchHub(Config())

    def apply(*ops: Any) -> None:
        with store.lock:
            result = store.apply(store.applied_seq + 1, Batch(tuple(ops), (), 1000))
        hub.publish(result)

    apply(Put("t", "old", freeze("y" * 100_000)))
    hub._history.reset(store.revision)  # the old value's revision left the window
    apply(Put("t", "k", "a"))
    before = hub._history.bytes
    apply(Put("t", "k", "b"))  # prev is the record just above: not counted twice
    assert hub._history.bytes - before < 1000
    before = hub._history.bytes
    apply(Delete("t", "old"))  # only this change keeps the old value alive now
    assert hub._history.bytes - before > 100_000


def test_a_watcher_queue_is_bounded_by_bytes_too() -> None:
    """A queue keeps its values alive after the history lets them go: 10,000 of 16 MiB each."""
    store = Store()
    hub = WatchHub(Config(watch_queue_bytes=1_000_000))
    watcher = hub.subscribe(WatchFilter("t"))

    def put(key: str, value: Any) -> None:
        with store.lock:
            hub.publish(store.apply(store.applied_seq + 1, Batch((Put("t", key, value),), (), 1)))

    for n in range(5):
        put("k", "x" * 300_000 + str(n))  # 4 fit in 1 MB (the first always does)
    assert watcher.ended
    got = []
    with pytest.raises(Lagged) as lagged:
        while (batch := watcher.poll()) is not None:
            got.append(batch.revision)
    assert got == [1, 2, 3] and lagged.value.last_revision == 3
    small = hub.subscribe(WatchFilter("t"), start_revision=4)  # resume: nothing lost
    put("k", "small")
    assert [b.revision for b in iter(small.poll, None)] == [4, 5, 6]
