"""redis-py's asyncio client: pipelines, transactions, pub/sub and keyspace notifications."""

from __future__ import annotations

import asyncio
import json
from typing import Any


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def next_message(pubsub: Any, timeout: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
        if message is not None:
            return message
    raise AssertionError("no message arrived")


def test_async_pipelines_and_transactions(amber_server: Any) -> None:
    async def main() -> None:
        r = amber_server.async_redis(decode_responses=True)
        await r.delete("a:n", "a:s")
        async with r.pipeline(transaction=False) as p:
            for i in range(100):
                p.set(f"a:{i}", i).incr("a:n")
            results = await p.execute()
        assert results[1::2] == list(range(1, 101))
        async with r.pipeline(transaction=True) as p:
            p.set("a:s", "x").append("a:s", "y").get("a:s")
            assert await p.execute() == [True, 2, "xy"]
        others = [amber_server.async_redis() for _ in range(10)]
        await asyncio.gather(*(o.incr("a:n") for o in others for _ in range(20)))
        assert await r.get("a:n") == "300"
        for o in others:
            await o.aclose()
        await r.aclose()

    run(main())


def test_many_async_clients_share_group_commit(amber_server: Any) -> None:
    async def main() -> None:
        clients = [amber_server.async_redis() for _ in range(20)]

        async def work(i: int, client: Any) -> None:
            for j in range(25):
                assert await client.set(f"g:{i}:{j}", "v") is True

        await asyncio.gather(*(work(i, c) for i, c in enumerate(clients)))
        assert len([k async for k in clients[0].scan_iter(match="g:*", count=1000)]) == 500
        for c in clients:
            await c.aclose()

    run(main())


def test_publish_subscribe(amber_server: Any) -> None:
    async def main() -> None:
        r = amber_server.async_redis(decode_responses=True)
        pubsub = r.pubsub()
        await pubsub.subscribe("news")
        await pubsub.psubscribe("sport.*")
        publisher = amber_server.async_redis()
        assert await publisher.publish("news", "hello") == 1
        assert await publisher.publish("sport.tennis", "ace") == 1
        first, second = await next_message(pubsub), await next_message(pubsub)
        assert (first["channel"], first["data"]) == ("news", "hello")
        assert (second["pattern"], second["channel"], second["data"]) == (
            "sport.*",
            "sport.tennis",
            "ace",
        )
        await pubsub.unsubscribe("news")
        await pubsub.punsubscribe()
        assert await publisher.publish("news", "again") == 0
        await pubsub.aclose()
        await publisher.aclose()
        await r.aclose()

    run(main())


def test_keyspace_notifications(amber_server: Any) -> None:
    async def main() -> None:
        r = amber_server.async_redis(decode_responses=True)
        await r.config_set("notify-keyspace-events", "KEA")
        pubsub = r.pubsub()
        await pubsub.psubscribe("__keyspace@0__:ks:*")
        await pubsub.subscribe("__keyevent@0__:del")
        writer = amber_server.async_redis()
        await writer.set("ks:a", "1")
        await writer.json().merge("ks:doc", "$", {"x": 1})
        await writer.delete("ks:a")
        seen = [await next_message(pubsub) for _ in range(4)]
        events = [(m["channel"], m["data"]) for m in seen]
        assert ("__keyspace@0__:ks:a", "set") in events
        assert ("__keyspace@0__:ks:doc", "merge") in events
        assert ("__keyspace@0__:ks:a", "del") in events
        assert ("__keyevent@0__:del", "ks:a") in events
        await writer.set("ks:short", "v", px=50)
        expired = await next_message(pubsub)
        assert (expired["channel"], expired["data"]) == ("__keyspace@0__:ks:short", "set")
        while True:  # the sweeper deletes it within about a second
            message = await next_message(pubsub)
            if message["data"] == "expired":
                break
        await r.config_set("notify-keyspace-events", "")
        await pubsub.aclose()
        await writer.aclose()
        await r.aclose()

    run(main())


def test_amber_watch_streams_revisions_and_diffs(amber_server: Any) -> None:
    async def main() -> None:
        writer = amber_server.async_redis(decode_responses=True)
        await writer.delete("wt:1")
        start = await writer.execute_command("AMBER.REV") + 1
        await writer.json().set("wt:1", "$", {"a": 1, "b": 2})
        await writer.json().merge("wt:1", "$", {"b": None})
        # RESP3: events arrive as push messages on a normal connection.
        r3 = amber_server.async_redis(protocol=3, decode_responses=True)
        pushed: list[Any] = []
        r3.connection_pool.connection_kwargs["push_handler_func"] = pushed.append
        watcher = amber_server.async_redis(decode_responses=True)
        pubsub = watcher.pubsub()
        await pubsub.execute_command("AMBER.WATCH", "wt:*", "FROM", str(start), "PREV")
        confirm = await pubsub.parse_response(block=True, timeout=10)
        assert confirm[0] == "amber.watch"
        events = [await pubsub.parse_response(block=True, timeout=10) for _ in range(2)]
        assert [e[4] for e in events] == ["put", "merge"]
        assert events[0][2] == start and events[0][3] == "wt:1"
        assert json.loads(events[1][5]) == {"a": 1}
        assert json.loads(events[1][6]) == {"b": None}
        assert json.loads(events[1][7]) == {"a": 1, "b": 2}
        await writer.delete("wt:1")
        deleted = await pubsub.parse_response(block=True, timeout=10)
        assert deleted[4] == "delete" and deleted[5] is None
        await pubsub.aclose()
        await watcher.aclose()
        await r3.aclose()
        await writer.aclose()

    run(main())
