"""amber.Client / AsyncClient against a real ``amber serve`` process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import amber
from amber import errors
from amber.store.batch import Compare, Delete, Merge, Put


def url(server: Any) -> str:
    return f"redis://{server.host}:{server.port}"


def test_crud_round_trips_documents(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("crud")
        doc = {"a": 1.5, "b": [1, "x", None, {"c": True}], "u": "é☃", "n": 10**15}
        rev = t.put("1", doc)
        assert rev == client.revision()
        assert t.get("1") == doc
        assert t.get("absent") is None and t.get("absent", 7) == 7
        assert t.put("s", "plain string") > rev
        assert t.get("s") == "plain string"
        assert t.merge("1", {"b": None, "z": {"y": 1}}) == {
            "a": 1.5,
            "u": "é☃",
            "n": 10**15,
            "z": {"y": 1},
        }
        assert t.merge("new", {"x": 1}) == {"x": 1}
        assert t.delete("new") is True
        assert t.delete("new") is False
        assert t.get("new") is None


def test_if_absent_and_ttl(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("cas")
        t.put("k", 1, if_absent=True)
        with pytest.raises(errors.ConditionFailed):
            t.put("k", 2, if_absent=True)
        with pytest.raises(errors.ConditionFailed):
            t.put("k", 2, ttl=10, if_absent=True)
        assert t.get("k") == 1
        assert client.call("PTTL", "cas:k") == -1
        t.put("k", 3, ttl=100)
        assert 0 < client.call("PTTL", "cas:k") <= 100_000
        t.put("k", 4)  # a put without ttl clears it, as in the embedded API
        assert client.call("PTTL", "cas:k") == -1
        with pytest.raises(errors.InvalidArgument):
            t.put("k", 1, ttl=0)
        with pytest.raises(errors.InvalidValue):
            t.put("k", {1, 2})


def test_scan_prefix_limit_and_tables_isolated(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("sc")
        client.table("sc2").put("a1", "other table")
        for i in range(25):
            t.put(f"a{i:02}", {"i": i})
        t.put("b*[x]", "glob chars")
        page = t.scan("a")
        assert [k for k, _ in page.items] == [f"a{i:02}" for i in range(25)]
        assert page.items[3][1] == {"i": 3} and not page.more
        assert page.revision >= 26
        limited = t.scan("a", limit=5)
        assert [k for k, _ in limited.items] == [f"a{i:02}" for i in range(5)] and limited.more
        assert t.scan("b*[").items == [("b*[x]", "glob chars")]
        assert len(t.scan().items) == 26


def test_txn_and_condition_failed(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("tx")
        rev = t.put("a", {"n": 1})
        new = client.txn(
            [Compare("tx", "a", "mod_revision", "=", rev)],
            [Put("tx", "b", [1]), Merge("tx", "a", {"m": 2}), Delete("tx", "c")],
        )
        assert new == rev + 1
        assert t.get("a") == {"n": 1, "m": 2} and t.get("b") == [1]
        with pytest.raises(errors.ConditionFailed):
            client.txn([Compare("tx", "a", "mod_revision", "=", rev)], [Delete("tx", "a")])
        assert t.get("a") == {"n": 1, "m": 2}


def test_watch_key_prefix_and_from(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("w")
        start = client.revision() + 1
        t.put("p1", {"a": 1})
        t.merge("p1", {"b": 2})
        t.put("q", 0)
        t.delete("p1")
        with t.watch(prefix="p", start_revision=start) as w:
            got = [w.get(timeout=10) for _ in range(3)]
            assert w.get(timeout=0.2) is None
        assert [(e.type, e.key, e.value) for e in got if e] == [
            ("put", "p1", {"a": 1}),
            ("merge", "p1", {"a": 1, "b": 2}),
            ("delete", "p1", None),
        ]
        assert got[1] is not None and got[1].prev_value == {"a": 1}
        with t.watch("q") as w:  # from now on
            t.put("q", 1)
            t.put("other", 1)
            t.put("q", 2)
            values = [e.value for e in (w.get(timeout=10), w.get(timeout=10)) if e]
            assert values == [1, 2]


def test_watch_resumes_after_server_restart(server_factory: Any) -> None:
    server = server_factory()
    port = str(server.port)
    client = amber.Client(f"redis://127.0.0.1:{port}")
    t = client.table("r")
    start = t.put("k", 0)
    w = t.watch(prefix="", start_revision=start)
    first = w.get(timeout=10)
    assert first is not None and first.value == 0
    server.kill()  # SIGKILL: the watch's connection drops
    server = server_factory(
        "--port", port, data=server.data, ports=("--http-port", "0", "--kvtext-port", "0")
    )
    client.redis.connection_pool.disconnect()
    for i in range(1, 4):
        t.put("k", i)
    events = [w.get(timeout=20) for _ in range(3)]
    assert [e.value for e in events if e] == [1, 2, 3]
    assert w.get(timeout=0.3) is None
    assert w.last_revision == client.revision()
    w.close()
    client.close()


def test_async_client(amber_server: Any) -> None:
    async def main() -> None:
        async with amber.AsyncClient(url(amber_server)) as client:
            t = client.table("async")
            start = await client.revision() + 1
            rev = await t.put("a", {"x": [1, 2]})
            assert rev == start
            assert await t.get("a") == {"x": [1, 2]}
            assert await t.merge("a", {"y": 1}) == {"x": [1, 2], "y": 1}
            with pytest.raises(errors.ConditionFailed):
                await t.put("a", 1, if_absent=True)
            await t.put("b", 2)
            page = await t.scan(limit=1)
            assert page.items == [("a", {"x": [1, 2], "y": 1})] and page.more
            assert await t.delete("b") is True
            assert await client.txn([], [Put("async", "c", 3)]) > rev
            w = await t.watch(start_revision=start)
            events = [await w.get(timeout=10) for _ in range(5)]
            assert [(e.type, e.key) for e in events if e] == [
                ("put", "a"),
                ("merge", "a"),
                ("put", "b"),
                ("delete", "b"),
                ("put", "c"),
            ]
            assert await w.get(timeout=0.2) is None
            await t.put("d", 4)
            event = await w.get(timeout=10)
            assert event is not None and event.key == "d"
            await w.close()

    asyncio.run(main())


def test_a_put_with_ttl_is_one_event(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("ttl1")
        start = client.revision() + 1
        rev = t.put("k", {"v": 1}, ttl=100)
        assert rev == start
        assert 0 < client.call("PTTL", "ttl1:k") <= 100_000
        client.txn([], [Put("ttl1", "j", 2, ttl_ms=50_000)])
        assert 0 < client.call("PTTL", "ttl1:j") <= 50_000
        w = t.watch(start_revision=start)
        events = [w.get(timeout=10), w.get(timeout=10)]
        assert [(e.revision, e.key, e.type) for e in events if e] == [
            (start, "k", "put"),
            (start + 1, "j", "put"),
        ]
        assert w.get(timeout=0.3) is None  # no second event for the TTL
        w.close()


def test_scan_of_the_default_table_sees_bare_and_colon_keys(amber_server: Any) -> None:
    with amber.Client(url(amber_server)) as client:
        t = client.table("default")
        t.put("zz-bare", 1)
        t.put("zz:with:colons", 2)
        client.table("zzother").put("zz-bare", 3)  # another table, same key: not included
        page = t.scan(prefix="zz")
        assert page.items == [("zz-bare", 1), ("zz:with:colons", 2)]
        assert t.scan(prefix="zz", limit=1).items == [("zz-bare", 1)]
