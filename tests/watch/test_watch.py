"""Watches end to end on a real database in a temp folder."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import amber
from amber import Put
from amber.errors import Closed, Compacted, InvalidArgument, InvalidName, Lagged
from amber.watch import Event, EventBatch, Progress


@pytest.fixture
def db(tmp_path: Path):
    with amber.open(tmp_path / "db", durability="never") as database:
        yield database


def take(watch: Any, n: int) -> list[Any]:
    return [next(watch) for _ in range(n)]


def test_events_carry_values_prev_values_and_diffs(db: amber.Database) -> None:
    docs = db.table("docs")
    with docs.watch("a") as watch:
        docs.put("a", {"n": 1, "tags": ["x"]})
        docs.merge("a", {"n": 2, "tags": None})
        docs.put("b", {"other": True})
        docs.delete("a")
        put, merge, delete = take(watch, 3)
    assert (put.revision, put.type, put.value, put.prev_value, put.diff) == (
        1,
        "put",
        {"n": 1, "tags": ["x"]},
        None,
        {"n": 1, "tags": ["x"]},
    )
    assert (merge.revision, merge.type, merge.prev_value, merge.diff) == (
        2,
        "merge",
        {"n": 1, "tags": ["x"]},
        {"n": 2, "tags": None},
    )
    assert (delete.revision, delete.type, delete.value, delete.diff) == (4, "delete", None, None)
    assert delete.prev_value == {"n": 2}


def test_start_revision_replays_history_then_goes_live(db: amber.Database) -> None:
    table = db.table("t")
    for n in range(5):
        table.put(f"k{n}", n)
    watch = table.watch(prefix="k", start_revision=3)
    table.put("k5", 5)
    assert [(e.revision, e.value) for e in take(watch, 4)] == [(3, 2), (4, 3), (5, 4), (6, 5)]
    assert watch.revision == 6
    watch.close()
    assert list(watch) == []  # closed by its consumer: iteration just ends


def test_database_watch_spans_tables_and_filters(db: amber.Database) -> None:
    everything = db.watch()
    one_table = db.watch("b")
    key_anywhere = db.watch(key="x")
    db.table("a").put("x", 1)
    db.table("b").put("y", 2)
    db.table("c").put("x", 3)
    assert [(e.table, e.key) for e in take(everything, 3)] == [("a", "x"), ("b", "y"), ("c", "x")]
    assert [(e.table, e.key) for e in take(one_table, 1)] == [("b", "y")]
    assert [(e.table, e.value) for e in take(key_anywhere, 2)] == [("a", 1), ("c", 3)]
    assert db.stats()["watch"]["watchers"] == 3


def test_transaction_events_arrive_together(db: amber.Database) -> None:
    watch = db.watch("t")
    db.txn([], [Put("t", "a", 1), Put("t", "b", 2), Put("u", "c", 3)])
    with db.transaction() as tx:
        tx.put("t", "c", 3)
        tx.delete("t", "a")
    batches = watch.batches()
    first, second = next(batches), next(batches)
    assert isinstance(first, EventBatch) and first.revision == 1
    assert [e.key for e in first.events] == ["a", "b"]
    assert [(e.revision, e.key, e.type) for e in second.events] == [
        (2, "c", "put"),
        (2, "a", "delete"),
    ]


def test_skip_noop_and_prev_value_options(db: amber.Database) -> None:
    table = db.table("t")
    plain = table.watch("k")
    quiet = table.watch("k", skip_noop=True, prev_value=False)
    table.put("k", {"a": 1})
    table.put("k", {"a": 1})
    table.merge("k", {"a": 1})
    table.put("k", {"a": 2})
    assert [e.diff for e in take(plain, 4)] == [{"a": 1}, {}, {}, {"a": 2}]
    first, last = take(quiet, 2)
    assert (first.revision, last.revision) == (1, 4)
    assert last.prev_value is None and last.diff == {"a": 2}


def test_ttl_expiry_is_an_event(tmp_path: Path) -> None:
    with amber.open(tmp_path, durability="never", jobs=False) as db:
        table = db.table("sessions")
        watch = table.watch()
        table.put("s1", {"user": "ada"}, ttl=0.02)
        time.sleep(0.05)
        assert db.sweep_expired() == 1
        put, expire = take(watch, 2)
    assert put.type == "put" and expire.type == "expire"
    assert expire.value is None and expire.prev_value == {"user": "ada"}


def test_compacted_says_where_history_starts(tmp_path: Path) -> None:
    with amber.open(tmp_path, durability="never", history_revisions=10) as db:
        table = db.table("t")
        for n in range(30):
            table.put("k", n)
        with pytest.raises(Compacted) as info:
            table.watch(start_revision=5)
        assert info.value.oldest_available == 21
        assert [e.value for e in take(table.watch(start_revision=21), 10)] == list(range(20, 30))


def test_lagged_watch_resumes_with_exactly_the_missing_events(tmp_path: Path) -> None:
    with amber.open(tmp_path, durability="never", watch_queue=16) as db:
        table = db.table("t")
        watch = table.watch()
        for n in range(100):
            table.put(f"k{n % 7}", n)
        seen = []
        with pytest.raises(Lagged) as info:
            seen.extend(e.value for e in watch)
        assert 0 < len(seen) <= 16
        resumed = table.watch(start_revision=info.value.last_revision + 1)
        seen.extend(e.value for e in take(resumed, 100 - len(seen)))
        table.put("end", "end")
        assert next(resumed).value == "end"
    assert seen == list(range(100))


def test_a_slow_watcher_does_not_slow_writers(tmp_path: Path) -> None:
    with amber.open(tmp_path, durability="never", watch_queue=8) as db:
        stuck = db.watch()  # never read
        table = db.table("t")
        started = time.perf_counter()
        for n in range(2000):
            table.put("k", n)
        assert time.perf_counter() - started < 5
        assert db.stats()["watch"]["lagged"] == 1
        with pytest.raises(Lagged):
            list(stuck)


def test_resume_across_restart_from_the_log(tmp_path: Path) -> None:
    with amber.open(tmp_path, durability="never") as db:
        for n in range(20):
            db.table("t").put(f"k{n}", n)
    with amber.open(tmp_path, durability="never") as db:
        watch = db.watch("t", start_revision=11)
        db.table("t").put("new", 20)
        assert [e.value for e in take(watch, 11)] == list(range(10, 21))


@pytest.mark.parametrize("snapshots", [1, 2])
def test_resume_across_restart_after_snapshots(tmp_path: Path, snapshots: int) -> None:
    # keep_snapshots=1: the log before the last snapshot is deleted, so the
    # history before it can only come from the snapshot itself.
    settings = {"durability": "never", "history_revisions": 50, "keep_snapshots": 1}
    with amber.open(tmp_path, **settings) as db:
        table = db.table("t")
        for round_ in range(snapshots):
            for n in range(30):
                table.merge(f"k{n % 4}", {"n": n, "round": round_})
            db.snapshot()
        for n in range(5):
            table.delete(f"k{n}")
        live = table.watch(start_revision=1 if snapshots == 1 else db.revision - 49)
        expected = [
            (e.revision, e.key, e.type, e.value, e.prev_value, e.diff) for e in watch_n(live)
        ]
    with amber.open(tmp_path, **settings) as db:
        start = expected[0][0]
        watch = db.table("t").watch(start_revision=start)
        got = [(e.revision, e.key, e.type, e.value, e.prev_value, e.diff) for e in watch_n(watch)]
        assert got == expected
        if start > 1:
            with pytest.raises(Compacted) as info:
                db.watch(start_revision=start - 1)
            assert info.value.oldest_available == start


def watch_n(watch: Any) -> list[Event]:
    """Everything the watch has now (replayed history), without waiting for more."""
    out: list[Event] = []
    target = watch.progress()
    for batch in watch.batches():
        out.extend(batch.events)
        if batch.revision >= target:
            break
    return out


def test_database_close_ends_watches_with_closed(tmp_path: Path) -> None:
    db = amber.open(tmp_path, durability="never")
    watch = db.watch()
    db.table("t").put("k", 1)
    db.close()
    assert next(watch).value == 1  # what was published still arrives
    with pytest.raises(Closed):
        next(watch)
    with pytest.raises(Closed):
        db.watch()


def test_blocked_iterator_wakes_for_a_write_from_another_thread(db: amber.Database) -> None:
    watch = db.table("t").watch()
    timer = threading.Timer(0.05, lambda: db.table("t").put("k", "v"))
    timer.start()
    assert next(watch).value == "v"
    timer.join()
    closer = threading.Timer(0.05, watch.close)
    closer.start()
    assert list(watch) == []  # close() from another thread ends a blocked iteration
    closer.join()


def test_progress_on_request_and_when_idle(db: amber.Database) -> None:
    table = db.table("t")
    table.put("k", 1)
    watch = table.watch("other", progress_interval=0.02)
    db.table("u").put("k", 2)
    assert watch.progress() == db.revision == 2
    item = next(watch)
    assert isinstance(item, Progress) and item.revision == 2 and watch.revision == 2
    table.put("other", 3)
    event = next(watch)
    assert isinstance(event, Event) and event.revision == 3
    batches = table.watch("other", progress_interval=0.02).batches()
    assert next(batches) == EventBatch(3, ())


def test_async_iteration(db: amber.Database) -> None:
    table = db.table("t")

    async def main() -> list[Any]:
        watch = table.watch(prefix="k", progress_interval=0.5)
        loop = asyncio.get_running_loop()
        calls = 0
        original = loop.call_soon_threadsafe

        def counting(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]

        async def write() -> None:
            await asyncio.sleep(0.02)
            await db.atxn([], [Put("t", f"k{n}", n) for n in range(50)])
            await table.aput("k", "last")

        writer = asyncio.create_task(write())
        got: list[Any] = []
        async with watch:
            async for event in watch:
                got.append(event)
                if len(got) == 51:
                    break
        await writer
        assert calls <= 4  # woken per publish, not per event
        return got

    got = asyncio.run(main())
    assert [e.revision for e in got] == [1] * 50 + [2]


def test_async_batches_and_progress(db: amber.Database) -> None:
    async def main() -> list[EventBatch]:
        out = []
        async with db.watch("t", progress_interval=0.02) as watch:
            db.table("t").put("a", 1)
            async for batch in watch.batches():
                out.append(batch)
                if len(out) == 2:
                    break
        return out

    first, idle = asyncio.run(main())
    assert first.revision == 1 and idle == EventBatch(1, ())


def test_callback_form_runs_on_the_dispatcher_thread(db: amber.Database) -> None:
    seen: list[tuple[Any, str]] = []
    done = threading.Event()

    def on_event(event: Event) -> None:
        seen.append((event.value, threading.current_thread().name))
        if len(seen) == 3:
            done.set()

    watch = db.table("t").watch(callback=on_event)
    for n in range(3):
        db.table("t").put("k", n)
    assert done.wait(5)
    watch.close()
    assert [v for v, _ in seen] == [0, 1, 2]
    assert all(name == "amber-watch-dispatch" for _, name in seen)


def test_callback_form_reports_lagged_and_callback_errors(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    ended = threading.Event()
    release = threading.Event()

    def on_error(exc: BaseException) -> None:
        errors.append(exc)
        ended.set()

    with amber.open(tmp_path, durability="never", watch_queue=4) as db:
        db.table("t").watch(callback=lambda e: release.wait(5), on_error=on_error)
        for n in range(20):
            db.table("t").put("k", n)
        release.set()
        assert ended.wait(5)
        assert isinstance(errors[0], Lagged)

        ended.clear()

        def broken(event: Event) -> None:
            raise RuntimeError("boom")

        watch = db.table("t").watch(callback=broken, on_error=on_error)
        db.table("t").put("k", "x")
        assert ended.wait(5)
        assert isinstance(errors[1], RuntimeError)
        watch.close()


def test_bad_arguments(db: amber.Database) -> None:
    table = db.table("t")
    with pytest.raises(InvalidArgument):
        table.watch("k", prefix="k")
    with pytest.raises(InvalidArgument):
        table.watch(start_revision=0)
    with pytest.raises(InvalidArgument):
        table.watch(start_revision=True)
    with pytest.raises(InvalidArgument):
        table.watch(progress_interval=-1)
    with pytest.raises(InvalidArgument):
        table.watch(prefix=3)  # type: ignore[call-overload]
    with pytest.raises(InvalidName):
        table.watch(3)  # type: ignore[call-overload]
    with pytest.raises(InvalidName):
        db.watch("")


def test_concurrent_writers_give_strictly_increasing_revisions(db: amber.Database) -> None:
    watch = db.watch()

    def write(worker: int) -> None:
        for n in range(200):
            db.table("t").put(f"{worker}-{n}", n)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    revisions = [e.revision for e in take(watch, 800)]
    assert revisions == sorted(set(revisions)) and revisions[-1] == db.revision


def test_callback_watches_share_one_dispatcher_thread(db: amber.Database) -> None:
    seen: list[str] = []
    before = threading.active_count()
    watches = [
        db.table("t").watch(f"k{n}", callback=lambda e: seen.append(e.key)) for n in range(200)
    ]
    assert threading.active_count() <= before + 1
    for n in range(200):
        db.table("t").put(f"k{n}", n)
    deadline = time.monotonic() + 5
    while len(seen) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(seen) == sorted(f"k{n}" for n in range(200))
    for watch in watches:
        watch.close()


def test_callback_close_stops_callbacks_and_progress_arrives(db: amber.Database) -> None:
    items: list[Any] = []
    got_progress = threading.Event()

    def on_item(item: Event | Progress) -> None:
        items.append(item)
        if isinstance(item, Progress):
            got_progress.set()
        elif item.value == "stop":
            watch.close()  # from inside the callback

    watch = db.table("t").watch(callback=on_item, progress_interval=0.02)
    db.table("t").put("k", 1)
    assert got_progress.wait(5)
    assert any(isinstance(i, Progress) and i.revision == 1 for i in items)
    db.table("t").put("k", "stop")
    db.table("t").put("k", "after")
    time.sleep(0.1)
    values = [i.value for i in items if isinstance(i, Event)]
    assert values == [1, "stop"]


def test_database_close_reports_closed_to_callback_watches(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    values: list[Any] = []
    db = amber.open(tmp_path, durability="never")
    db.table("t").watch(callback=lambda e: values.append(e.value), on_error=errors.append)
    db.table("t").put("k", 1)
    db.close()  # delivers what was queued, then Closed
    assert values == [1] and len(errors) == 1 and isinstance(errors[0], Closed)
