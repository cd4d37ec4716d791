"""HTTP: ``/v1/watch`` as Server-Sent Events, over real sockets with httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from http_support import LiveServer, SseReader, problem

import amber
from amber.database import Delete, Put
from amber.server.http import close_streams


def _server(**settings: Any) -> Iterator[LiveServer]:
    db = amber.open("memory://", **settings)
    with LiveServer(db) as live:
        yield live
    db.close()


@pytest.fixture
def server() -> Iterator[LiveServer]:
    yield from _server()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(10, read=5)) as client:
        yield client


def _data(event: dict[str, str]) -> Any:
    return json.loads(event["data"])


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_changes_arrive_as_events_with_diffs(http: httpx.Client, server: LiveServer) -> None:
    table = server.db.table("accounts")
    with http.stream("GET", "/v1/watch", params={"table": "accounts"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        events = SseReader(response)
        table.put("42", {"user": "ada", "tags": ["x"]})
        table.merge("42", {"age": 36, "tags": None})
        table.delete("42")
        server.db.table("elsewhere").put("k", 1)  # another table: not this watch's
        put, merge, delete = events.take(3)
    assert events.comments == ["watching from revision 1"]
    assert put["event"] == "message" and put["id"] == "1"
    assert _data(put) == {
        "revision": 1,
        "table": "accounts",
        "key": "42",
        "type": "put",
        "value": {"user": "ada", "tags": ["x"]},
        "prev_value": None,
        "diff": {"user": "ada", "tags": ["x"]},
    }
    assert _data(merge)["diff"] == {"age": 36, "tags": None}
    assert _data(merge)["prev_value"] == {"user": "ada", "tags": ["x"]}
    assert (_data(delete)["type"], _data(delete)["value"], _data(delete)["diff"]) == (
        "delete",
        None,
        None,
    )
    assert delete["id"] == "3"


def test_a_transaction_sets_the_id_on_its_last_event_only(
    http: httpx.Client, server: LiveServer
) -> None:
    with http.stream("GET", "/v1/watch") as response:
        events = SseReader(response)
        server.db.txn([], [Put("a", "x", 1), Put("b", "y", 2), Delete("a", "nope")])
        server.db.table("a").put("z", 3)
        first, second, third = events.take(3)
    assert "id" not in first
    assert (second["id"], _data(second)["revision"]) == ("1", 1)
    assert (third["id"], _data(third)["key"]) == ("2", "z")


def test_key_and_prefix_filters(http: httpx.Client, server: LiveServer) -> None:
    table = server.db.table("t")
    with http.stream("GET", "/v1/watch", params={"table": "t", "prefix": "user:"}) as r:
        events = SseReader(r)
        table.put("order:1", 1)
        table.put("user:1", 2)
        assert _data(events.next())["key"] == "user:1"
    with http.stream("GET", "/v1/watch", params={"table": "t", "key": "only"}) as r:
        events = SseReader(r)
        table.put("other", 1)
        table.put("only", 2)
        assert _data(events.next())["key"] == "only"


def test_from_replays_history_then_goes_live(http: httpx.Client, server: LiveServer) -> None:
    table = server.db.table("t")
    for n in range(5):
        table.put(f"k{n}", n)
    with http.stream("GET", "/v1/watch", params={"table": "t", "from": 3}) as response:
        events = SseReader(response)
        replayed = events.take(3)
        table.put("live", 1)
        live = events.next()
    assert [e["id"] for e in replayed] == ["3", "4", "5"]
    assert _data(live)["revision"] == 6


def test_reconnecting_with_last_event_id_loses_and_repeats_nothing(
    http: httpx.Client, server: LiveServer
) -> None:
    table = server.db.table("t")
    seen: list[tuple[int, str]] = []
    with http.stream("GET", "/v1/watch", params={"table": "t"}) as response:
        events = SseReader(response)
        server.db.txn([], [Put("t", "a", 1), Put("t", "b", 1)])
        server.db.txn([], [Put("t", "c", 1), Put("t", "d", 1)])
        batch = events.take(3)  # the connection drops in the middle of revision 2
        seen += [(_data(e)["revision"], _data(e)["key"]) for e in batch]
        last_id = next(e["id"] for e in reversed(batch) if "id" in e)
    assert last_id == "1"
    seen = [s for s in seen if s[0] <= int(last_id)]  # what a client keeps: whole revisions
    table.put("e", 1)  # written while disconnected
    headers = {"last-event-id": last_id}
    # Last-Event-ID wins over the original from=.
    params = {"table": "t", "from": "1"}
    with http.stream("GET", "/v1/watch", params=params, headers=headers) as response:
        events = SseReader(response)
        seen += [(_data(e)["revision"], _data(e)["key"]) for e in events.take(3)]
    assert seen == [(1, "a"), (1, "b"), (2, "c"), (2, "d"), (3, "e")]


def test_idle_stream_sends_progress_with_an_id(http: httpx.Client, server: LiveServer) -> None:
    server.db.table("t").put("k", 1)
    with http.stream("GET", "/v1/watch", params={"table": "x", "heartbeat": 0.1}) as response:
        events = SseReader(response)
        server.db.table("t").put("k", 2)  # not matched: progress still moves on
        progress = events.next()
        while progress["id"] != "2":
            progress = events.next()
    assert progress["event"] == "progress"
    assert _data(progress) == {"revision": 2}


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"key": "a", "prefix": "b"}, {}),
        ({"from": "0"}, {}),
        ({"from": "x"}, {}),
        ({"heartbeat": "0"}, {}),
        ({"heartbeat": "nan"}, {}),
        ({"table": "bad name"}, {}),
        ({}, {"last-event-id": "not-a-revision"}),
        ({"prev_value": "perhaps"}, {}),
    ],
)
def test_bad_watch_arguments_are_400_before_the_stream(
    http: httpx.Client, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = http.get("/v1/watch", params=params, headers=headers)
    assert response.status_code == 400, response.text
    problem(response)


def test_compacted_history_is_410_with_the_oldest_revision() -> None:
    for live in _server(history_revisions=5):
        for n in range(20):
            live.db.table("t").put("k", n)
        with httpx.Client(base_url=live.url, timeout=10) as http:
            response = http.get("/v1/watch", params={"from": 2})
        body = problem(response)
        assert response.status_code == 410
        assert body["type"] == "/problems/compacted"
        assert body["requested"] == 2
        assert 2 < body["oldest_available"] <= 20


def test_a_lagging_stream_ends_with_a_problem_and_resumes() -> None:
    for live in _server(watch_queue=10):
        table = live.db.table("t")
        with (
            httpx.Client(base_url=live.url, timeout=httpx.Timeout(10, read=5)) as http,
            http.stream("GET", "/v1/watch", params={"table": "t"}) as response,
        ):
            events = SseReader(response)
            # Hold the server's loop while 50 revisions arrive: the watch queue overflows.
            live.call(lambda: time.sleep(0.3))
            for n in range(50):
                table.put(f"k{n:02d}", n)
            received: list[dict[str, str]] = []
            event = events.next()
            while event["event"] == "message":
                received.append(event)
                event = events.next()
            with pytest.raises(EOFError):
                events.next()
        assert event["event"] == "problem"
        lagged = _data(event)
        assert lagged["type"] == "/problems/lagged"
        assert lagged["status"] == 409
        assert lagged["last_revision"] == len(received) < 50
        assert received[-1]["id"] == str(lagged["last_revision"])
        headers = {"last-event-id": received[-1]["id"]}
        with (
            httpx.Client(base_url=live.url, timeout=httpx.Timeout(10, read=5)) as http,
            http.stream("GET", "/v1/watch", params={"table": "t"}, headers=headers) as response,
        ):
            rest = SseReader(response).take(50 - len(received))
        keys = [_data(e)["key"] for e in received + rest]
        assert keys == [f"k{n:02d}" for n in range(50)]


def test_a_client_disconnect_closes_its_watch(http: httpx.Client, server: LiveServer) -> None:
    def watchers() -> int:
        count: int = server.db.stats()["watch"]["watchers"]
        return count

    with http.stream("GET", "/v1/watch") as response:
        SseReader(response)
        _wait_for(lambda: watchers() == 1)
        assert server.gauge("amber_requests_in_flight", frontend="http") == 1
    _wait_for(lambda: watchers() == 0)
    _wait_for(lambda: server.gauge("amber_requests_in_flight", frontend="http") == 0)


def test_close_streams_ends_open_streams_and_refuses_new_ones(
    http: httpx.Client, server: LiveServer
) -> None:
    with http.stream("GET", "/v1/watch") as response:
        events = SseReader(response)
        server.call(lambda: close_streams(server.app))
        started = time.monotonic()
        with pytest.raises(EOFError):
            events.next()
        assert time.monotonic() - started < 2
    refused = http.get("/v1/watch")
    assert refused.status_code == 503
    assert problem(refused)["type"] == "/problems/closed"


def test_stopping_the_server_with_an_open_stream_is_prompt() -> None:
    db = amber.open("memory://")
    live = LiveServer(db).__enter__()
    try:
        with httpx.Client(base_url=live.url, timeout=httpx.Timeout(10, read=5)) as http:
            with http.stream("GET", "/v1/watch") as response:
                events = SseReader(response)
                started = time.monotonic()
                live.stop()
                with pytest.raises((EOFError, httpx.RemoteProtocolError)):
                    events.next()
            assert time.monotonic() - started < 3
    finally:
        db.close()
