"""AsyncClient watches across a restart of a real ``amber serve`` process.

The watch keeps its own connection; when the server goes away it reconnects
(bounded retries with backoff) and resumes with ``AMBER.WATCH … FROM
<last revision>``, skipping the events of that revision it already
delivered. These tests stop the server (SIGTERM, or SIGKILL with
``--durability always``), start a new one on the same data folder and port,
and check that the same watch iterator yields every written event exactly
once, in revision order. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import amber
from amber.client import AsyncClientWatch
from amber.store.batch import Put
from amber.watch import Event

pytestmark = pytest.mark.timeout(90)

_T = TypeVar("_T")

#: The longest any single step may take (a server start on a busy machine included).
STEP_S = 30.0
#: How long "nothing more arrives" is watched for.
QUIET_S = 0.3

Seen = tuple[int, str, Any]


def _resp_only(port: int) -> tuple[str, ...]:
    return ("--port", str(port), "--http-port", "-1", "--kvtext-port", "-1")


def _url(server: Any) -> str:
    return f"redis://{server.host}:{server.port}"


def _seen(event: Event) -> Seen:
    return (event.revision, event.key, event.value)


async def _bounded(awaitable: Awaitable[_T], timeout: float = STEP_S) -> _T:
    return await asyncio.wait_for(awaitable, timeout)


async def _next(watch: AsyncClientWatch, timeout: float = 10.0) -> Event:
    """The watch's next event; the outer bound also covers a reconnect."""
    event = await _bounded(watch.get(timeout=timeout), timeout + STEP_S)
    assert event is not None, "no event in time"
    return event


async def _until(check: Callable[[], bool], timeout: float = STEP_S) -> None:
    """Poll ``check`` until it holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _restart(server_factory: Any, server: Any, how: str) -> Any:
    """Stop ``server`` (``how``: sigterm | sigkill) and start it again on its folder and port."""
    port = server.port
    if how == "sigterm":
        assert server.stop(signal.SIGTERM) == 0
    else:
        server.kill()
    return server_factory("--durability", "always", data=server.data, ports=_resp_only(port))


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_async_watch_iterator_resumes_after_restart(server_factory: Any, how: str) -> None:
    """An ``async for`` over one watch, running while the server restarts, sees
    every event once: the ones before, the ones after, and the second event of
    a two-key transaction (one revision, two events)."""
    server = server_factory("--durability", "always", ports=_resp_only(0))

    async def main() -> None:
        client = amber.AsyncClient(_url(server), socket_timeout=10)
        t = client.table("ar")
        start = await client.revision() + 1
        watch = await t.watch(prefix="k", start_revision=start)
        # Retry sooner and for longer than by default: a quick test, and a slow restart
        # on a busy machine (about a minute of backoff) still survived.
        watch.backoff, watch.retries = 0.05, 40
        got: list[Seen] = []

        async def consume() -> None:
            async for event in watch:
                got.append(_seen(event))

        consumer = asyncio.get_running_loop().create_task(consume())
        expected: list[Seen] = []
        try:
            assert watch.last_revision == 0
            for i in range(3):
                expected.append((await t.put(f"k{i}", i), f"k{i}", i))
            pair = await client.txn([], [Put("ar", "ka", "a"), Put("ar", "kb", "b")])
            expected += [(pair, "ka", "a"), (pair, "kb", "b")]
            await t.put("other", "not watched")
            await _until(lambda: len(got) >= len(expected))
            assert got == expected
            assert watch.last_revision == pair

            # The consumer sits in watch.get() while the server goes away and comes back.
            restarted = await asyncio.to_thread(_restart, server_factory, server, how)
            assert restarted.port == server.port
            await client.redis.connection_pool.disconnect()  # the pool's sockets are dead
            assert await client.revision() == pair + 1  # the "other" put

            after: list[Seen] = []
            for i in range(3, 6):
                after.append((await t.put(f"k{i}", i), f"k{i}", i))
            again = await client.txn([], [Put("ar", "kc", "c"), Put("ar", "kd", "d")])
            after += [(again, "kc", "c"), (again, "kd", "d")]
            after.append((await t.put("k0", "last"), "k0", "last"))
            await _until(lambda: len(got) >= len(expected) + len(after))
            await asyncio.sleep(QUIET_S)  # no duplicate trails in
            assert got == expected + after

            revisions = [r for r, _, _ in got]
            assert revisions == sorted(revisions)
            assert len(set(revisions)) == len(revisions) - 2  # only the two pairs share one
            assert watch.last_revision == after[-1][0] == await client.revision()
            assert not consumer.done()
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            await watch.close()
            await client.close()

    asyncio.run(main())


def test_async_watch_resumes_from_its_last_revision_not_from_now(server_factory: Any) -> None:
    """Events written while nobody reads, then a SIGKILL: after the restart the
    watch delivers them first (it resumes from where it was, not from the
    server's current revision), then what is written next. A watch that has
    delivered nothing resumes from its start revision."""
    server = server_factory("--durability", "always", ports=_resp_only(0))

    async def main() -> None:
        client = amber.AsyncClient(_url(server), socket_timeout=10)
        t = client.table("af")
        watch = await t.watch(prefix="w")
        fresh = await t.watch("f")  # from now on; delivers nothing before the restart
        watch.retries = fresh.retries = 40
        try:
            first = await t.put("w1", 1)
            event = await _next(watch)
            assert _seen(event) == (first, "w1", 1)
            assert event.prev_value is None and event.type == "put"
            assert watch.last_revision == first

            # A timed-out get drops the connection; the next one resumes without a repeat.
            assert await _bounded(watch.get(timeout=0.2)) is None
            second = await t.put("w1", 2)
            event = await _next(watch)
            assert _seen(event) == (second, "w1", 2) and event.prev_value == 1
            assert watch.last_revision == second

            # Written while neither watch reads (the merge returns the value, not a revision).
            assert await t.put("w2", 3) == second + 1
            assert await t.put("f", "before") == second + 2
            assert await t.merge("w2", {"m": 1}) == {"m": 1}
            assert fresh.last_revision == 0

            restarted = await asyncio.to_thread(_restart, server_factory, server, "sigkill")
            assert restarted.port == server.port
            await client.redis.connection_pool.disconnect()
            assert await client.revision() == second + 3

            later = await t.put("w3", 4)
            await t.put("f", "after")
            got = [_seen(await _next(watch, 20.0)) for _ in range(3)]
            assert got == [(second + 1, "w2", 3), (second + 3, "w2", {"m": 1}), (later, "w3", 4)]
            assert await _bounded(watch.get(timeout=QUIET_S)) is None
            assert watch.last_revision == later

            fresh_got = [await _next(fresh, 20.0) for _ in range(2)]
            assert [e.value for e in fresh_got] == ["before", "after"]
            assert fresh_got[0].revision == second + 2
            assert fresh_got[1].prev_value == "before"
            assert await _bounded(fresh.get(timeout=QUIET_S)) is None
            assert fresh.last_revision == await client.revision()
        finally:
            await watch.close()
            await fresh.close()
            await client.close()

    asyncio.run(main())
