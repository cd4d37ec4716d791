"""The embedded API end to end, on the real log backend in a temp folder."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import amber
from amber import Compare, Delete, Merge, Put
from amber.errors import (
    Closed,
    ConditionFailed,
    InvalidArgument,
    InvalidName,
    InvalidQuery,
    InvalidValue,
    Locked,
    NotFound,
    TooLarge,
)


@pytest.fixture
def db(tmp_path: Path):
    with amber.open(tmp_path / "db") as database:
        yield database


def test_design_example(tmp_path: Path) -> None:
    with amber.open(tmp_path) as db:
        accounts = db.table("accounts")
        uid = amber.new_id()
        accounts.put(uid, {"user": "ada", "tags": ["x"]})
        assert accounts.merge(uid, {"age": 36, "tags": None}) == {"user": "ada", "age": 36}
        assert accounts.get(uid) == {"user": "ada", "age": 36}
    with amber.open(tmp_path) as db:
        assert db.table("accounts").get(uid) == {"user": "ada", "age": 36}
        assert db.revision == 2


def test_values_are_read_only_and_isolated_from_caller(db: amber.Database) -> None:
    t = db.table("t")
    doc = {"a": [1, 2]}
    t.put("k", doc)
    doc["a"].append(3)  # the caller's object is not the stored one
    assert t["k"] == {"a": [1, 2]}
    with pytest.raises(TypeError, match="read-only"):
        t["k"]["a"].append(3)
    mutable = amber.thaw(t["k"])
    mutable["a"].append(3)
    assert t["k"] == {"a": [1, 2]}


def test_dict_conveniences(db: amber.Database) -> None:
    t = db.table("t")
    t["b"] = 2
    t["a"] = 1
    assert "a" in t and "zz" not in t and 5 not in t
    assert len(t) == 2 and list(t) == ["a", "b"]
    assert dict(t.items()) == {"a": 1, "b": 2}
    del t["a"]
    with pytest.raises(NotFound):
        del t["a"]
    with pytest.raises(KeyError):  # NotFound is a KeyError
        t["a"]
    assert t.get("a", "dflt") == "dflt"


def test_entry_metadata(db: amber.Database) -> None:
    t = db.table("t")
    t.put("k", 1)
    db.table("u").put("x", 1)
    t.put("k", 2)
    entry = t.entry("k")
    assert entry is not None
    assert (entry.create_revision, entry.mod_revision, entry.version) == (1, 3, 2)
    assert t.entry("nope") is None


def test_conditions(db: amber.Database) -> None:
    t = db.table("t")
    rev = t.put("k", 1, if_absent=True)
    with pytest.raises(ConditionFailed):
        t.put("k", 2, if_absent=True)
    with pytest.raises(ConditionFailed):
        t.put("k", 2, if_revision=rev + 5)
    t.put("k", 2, if_revision=rev)
    t.merge("k", {"a": 1}, if_version=2)
    with pytest.raises(ConditionFailed):
        t.delete("k", if_version=1)
    assert t.get("k") == {"a": 1}
    assert db.revision == 3


def test_txn_all_or_nothing(db: amber.Database) -> None:
    t = db.table("t")
    t.put("a", 10)
    result = db.txn(
        [Compare("t", "a", "value", "=", 10)],
        [Put("t", "a", 9), Put("t", "b", 1), Merge("u", "m", {"x": 1}), Delete("t", "zz")],
    )
    assert result.revision == 2
    assert [e.key if e else None for e in result.entries] == ["a", "b", "m", None]
    with pytest.raises(ConditionFailed):
        db.txn([Compare("t", "a", "value", "=", 10)], [Put("t", "a", 0), Put("t", "c", 1)])
    assert t.get("a") == 9 and "c" not in t and db.revision == 2


def test_transaction_block_detects_conflicts(db: amber.Database) -> None:
    t = db.table("acct")
    t.put("x", {"balance": 10})
    t.put("y", {"balance": 0})
    with db.transaction() as tx:
        x = tx.get("acct", "x")
        tx.merge("acct", "x", {"balance": x["balance"] - 5})
        tx.merge("acct", "y", {"balance": 5})
    assert t["x"] == {"balance": 5} and t["y"] == {"balance": 5}

    with pytest.raises(ConditionFailed), db.transaction() as tx:
        tx.get("acct", "x")
        t.put("x", {"balance": 100})  # a concurrent writer
        tx.put("acct", "x", {"balance": 0})
    assert t["x"] == {"balance": 100}

    with pytest.raises(RuntimeError), db.transaction() as tx:
        tx.put("acct", "x", {"balance": -1})
        raise RuntimeError("boom")
    assert t["x"] == {"balance": 100}


def test_scan_filters_and_pages(db: amber.Database) -> None:
    users = db.table("users")
    for i in range(30):
        users.put(f"u{i:02d}", {"age": i, "tags": ["even"] if i % 2 == 0 else ["odd"]})
    page = users.scan(where=[("age", ">=", 20), ("tags", "contains", "even")], limit=3)
    assert [k for k, _ in page.items] == ["u20", "u22", "u24"] and page.more
    rest = users.scan(
        where=[("age", ">=", 20), ("tags", "contains", "even")], start=page.next_start
    )
    assert [k for k, _ in rest.items] == ["u26", "u28"] and not rest.more
    assert users.count(prefix="u1") == 10
    assert users.count(where=[("age", "<", 5)]) == 5
    assert [k for k, _ in users.scan("u2", reverse=True, limit=2).items] == ["u29", "u28"]
    with pytest.raises(InvalidQuery):
        users.scan(where=[("age", "~", 1)])


def test_ttl_hides_at_once_and_sweeper_deletes(db: amber.Database) -> None:
    t = db.table("t")
    t.put("k", 1, ttl=0.05)
    assert t.get("k") == 1 and 0 < (t.ttl("k") or 0) <= 0.05
    t.put("p", 1)
    assert t.ttl("p") is None
    deadline = threading.Event()
    deadline.wait(0.08)
    assert t.get("k") is None and "k" not in t and len(t) == 1
    before = db.revision
    assert db.sweep_expired() == 1
    assert db.revision == before + 1 and t.entry("k") is None
    with pytest.raises(InvalidArgument):
        t.put("k", 1, ttl=0)


def test_txn_put_at_an_absolute_time(db: amber.Database) -> None:
    db.txn([], [Put("t", "k", 1, expires_at_ms=33177117420001)])
    entry = db.table("t").entry("k")
    assert entry is not None and entry.expires_at_ms == 33177117420001
    revision = db.revision
    for bad in (
        Put("t", "k", 2, expires_at_ms=0),
        Put("t", "k", 2, expires_at_ms=True),  # type: ignore[arg-type]
        Put("t", "k", 2, ttl_ms=10, expires_at_ms=33177117420001),
        Put("t", "k", 2, keep_ttl=True, expires_at_ms=33177117420001),
    ):
        with pytest.raises(InvalidArgument):
            db.txn([], [bad])
    assert db.revision == revision and db.table("t").get("k") == 1


def test_txn_update_ops_compute_at_apply_time(db: amber.Database) -> None:
    from amber.database import Update, UpdateResult

    first = db.txn([], [Update("t", "n", "incr", (5,)), Update("t", "n", "incr", (1,))])
    assert [e.result for e in first.entries if isinstance(e, UpdateResult)] == [5, 6]
    assert db.table("t").get("n") == "6"
    refused = db.txn([], [Put("t", "j", {"a": 1}), Update("t", "j", "incr", (1,))])
    outcome = refused.entries[1]
    assert isinstance(outcome, UpdateResult) and outcome.error is not None
    assert outcome.error.startswith("WRONGTYPE") and db.table("t").get("j") == {"a": 1}
    revision = db.revision
    for bad in (Update("t", "n", "incr", ("1",)), Update("t", "n", "nope", ())):
        with pytest.raises(InvalidArgument):
            db.txn([], [bad])
    assert db.revision == revision


def test_tables_and_drop(db: amber.Database) -> None:
    db.table("a").put("k", 1)
    db.table("b").put("k", 1)
    handle = db.table("a")
    assert db.tables() == ["a", "b"]
    assert db.drop_table("a") is True
    assert db.tables() == ["b"] and handle.get("k") is None and len(handle) == 0
    handle.put("k", 2)  # the handle keeps working: the table is created again
    assert db.tables() == ["a", "b"]


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda t: t.put("k", {1: "x"}), InvalidValue),
        (lambda t: t.put("k", b"bytes"), InvalidValue),
        (lambda t: t.put("k", float("nan")), InvalidValue),
        (lambda t: t.put("", 1), InvalidName),
        (lambda t: t.put("k" * 1025, 1), InvalidName),
        (lambda t: t.put(7, 1), InvalidName),
        (lambda t: t.get(["unhashable"]), InvalidName),
        (lambda t: t.put("k", 1, ttl=-1), InvalidArgument),
        (lambda t: t.scan(limit=-1), InvalidArgument),
    ],
)
def test_bad_input_is_typed_and_changes_nothing(db: amber.Database, call, error) -> None:
    t = db.table("t")
    t.put("k", "before")
    revision = db.revision
    with pytest.raises(error):
        call(t)
    assert db.revision == revision and t.get("k") == "before"


def test_bad_table_name(db: amber.Database) -> None:
    with pytest.raises(InvalidName):
        db.table("no spaces")
    with pytest.raises(InvalidName):
        db.table("x" * 129)


def test_value_size_limit(tmp_path: Path) -> None:
    with amber.open(tmp_path, limits=amber.Limits(max_value_bytes=1000)) as db:
        t = db.table("t")
        t.put("small", "x" * 900)
        with pytest.raises(TooLarge, match="t:big"):
            t.put("big", "x" * 2000)
        assert "big" not in t


def test_second_open_is_refused(tmp_path: Path) -> None:
    with amber.open(tmp_path), pytest.raises(Locked):
        amber.open(tmp_path)


def test_closed(tmp_path: Path) -> None:
    db = amber.open(tmp_path)
    t = db.table("t")
    t.put("k", 1)
    db.close()
    db.close()  # idempotent
    with pytest.raises(Closed):
        t.get("k")
    with pytest.raises(Closed):
        t.put("k", 2)
    with pytest.raises(Closed):
        db.table("t")


@pytest.mark.parametrize("durability", ["always", "interval", "never"])
def test_many_threads_share_fsyncs(tmp_path: Path, durability: str) -> None:
    with amber.open(tmp_path, durability=durability) as db:
        t = db.table("t")

        def writer(n: int) -> None:
            for i in range(50):
                t.put(f"{n}-{i}", i)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(t) == 800 and db.revision == 800
        stats = db.stats()["pipeline"]
        if durability == "always":
            assert 0 < stats["fsyncs"] < 800  # group commit: fewer fsyncs than writes
    with amber.open(tmp_path) as db:
        assert len(db.table("t")) == 800


def test_async_face(tmp_path: Path) -> None:
    async def main() -> None:
        with amber.open(tmp_path) as db:
            t = db.table("t")
            revisions = await asyncio.gather(*(t.aput(f"k{i}", i) for i in range(200)))
            assert sorted(revisions) == list(range(1, 201))
            assert await t.amerge("k1", {"a": 1}) == {"a": 1}
            assert await t.adelete("k2") is True
            with pytest.raises(ConditionFailed):
                await t.aput("k3", 0, if_absent=True)
            result = await db.atxn([], [Put("t", "z", 1)])
            assert result.revision == db.revision

    asyncio.run(main())


def test_snapshot_then_reopen(tmp_path: Path) -> None:
    with amber.open(tmp_path) as db:
        t = db.table("t")
        for i in range(100):
            t.put(f"k{i:03d}", {"i": i})
        db.snapshot()
        for i in range(100, 150):
            t.put(f"k{i:03d}", {"i": i})
        t.delete("k000")
        revision = db.revision
    with amber.open(tmp_path) as db:
        t = db.table("t")
        assert db.revision == revision and len(t) == 149
        assert t["k149"] == {"i": 149} and "k000" not in t
        assert t.entry("k149") is not None


def test_closed_databases_are_freed(tmp_path: Path) -> None:
    """Reopening must not leak: nothing may pin a closed database's store."""
    import gc
    import weakref

    with amber.open(tmp_path) as db:
        db.table("t").put("k", {"v": 1})
    nodes = []
    for _ in range(3):
        reopened = amber.open(tmp_path, jobs=False)
        nodes.append(weakref.ref(reopened._node))
        reopened.close()
        del reopened
    gc.collect()
    assert all(node() is None for node in nodes)


def test_a_closed_database_is_freed_without_waiting_for_the_gc(tmp_path: Path) -> None:
    """No reference cycle may keep a closed store alive until the next full GC pass."""
    import gc
    import weakref

    db = amber.open(tmp_path)
    db.table("t").put("k", 1)
    store = weakref.ref(db._node.store)
    enabled = gc.isenabled()
    gc.disable()
    try:
        db.close()
        del db
        assert store() is None
    finally:
        if enabled:
            gc.enable()
