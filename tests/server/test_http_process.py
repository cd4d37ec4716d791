"""End to end through a real ``amber serve`` process: HTTP, KV text and RESP together."""

from __future__ import annotations

import json
import signal
import socket
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from http_support import SseReader, problem

if TYPE_CHECKING:  # only for annotations: two conftest modules exist
    from conftest import ServerFactory, ServerProcess


def _http(server: ServerProcess) -> httpx.Client:
    url = f"http://{server.host}:{server.ports['http']}"
    return httpx.Client(base_url=url, timeout=httpx.Timeout(20, read=10))


def _kvtext(server: ServerProcess, data: bytes, lines: int) -> list[bytes]:
    with socket.create_connection((server.host, server.ports["kvtext"]), timeout=10) as sock:
        sock.sendall(data)
        buffer = b""
        while buffer.count(b"\n") < lines:
            chunk = sock.recv(65536)
            assert chunk, buffer
            buffer += chunk
    return [line + b"\n" for line in buffer.split(b"\n")[:lines]]


def test_one_document_through_three_protocols(amber_server: ServerProcess) -> None:
    with _http(amber_server) as http:
        created = http.put("/v1/tables/e2e/keys/42", json={"user": "ada", "tags": ["x"]})
        assert created.status_code == 201
        merged = http.patch(
            "/v1/tables/e2e/keys/42",
            content=b'{"age": 37, "tags": null}',
            headers={
                "content-type": "application/merge-patch+json",
                "if-match": created.headers["etag"],
            },
        )
        assert merged.status_code == 200
        assert merged.json() == {"user": "ada", "age": 37}
        redis = amber_server.redis()
        assert json.loads(redis.execute_command("JSON.GET", "e2e:42")) == merged.json()
        redis.set("e2e:plain", "3")
        assert http.get("/v1/tables/e2e/keys/plain").json() == "3"
        assert _kvtext(amber_server, b"GET e2e plain\r\nGET e2e 42\r\n", 4) == [
            b"3\r\n",
            b"OK\r\n",
            b'{"user":"ada","age":37}\r\n',
            b"OK\r\n",
        ]
        stale = http.delete("/v1/tables/e2e/keys/42", headers={"if-match": created.headers["etag"]})
        assert stale.status_code == 412
        assert problem(stale)["type"] == "/problems/condition-failed"
        redis.close()


def test_the_guides_session_against_the_process(amber_server: ServerProcess) -> None:
    replies = _kvtext(
        amber_server,
        b"UNKNOWN shopping\r\nGET shopping eggs\r\nCREATE shopping\r\nPUT shopping eggs 3\r\n"
        b"GET shopping eggs\r\nDELETE shopping eggs\r\nGET shopping eggs\r\n",
        9,
    )
    assert replies == [
        b"UNKNOWN COMMAND\r\n",
        b"NOT FOUND\r\n",
        b"OK\r\n",
        b"OK\r\n",
        b"3\r\n",
        b"OK\r\n",
        b"OK\r\n",
        b"\r\n",
        b"OK\r\n",
    ]


def test_a_redis_write_is_an_sse_event(amber_server: ServerProcess) -> None:
    redis = amber_server.redis()
    with (
        _http(amber_server) as http,
        http.stream("GET", "/v1/watch", params={"table": "sse", "heartbeat": 5}) as response,
    ):
        events = SseReader(response)
        redis.set("sse:k", "v1")
        redis.execute_command("JSON.MERGE", "sse:doc", "$", '{"a": 1}')
        first, second = events.take(2)
    redis.close()
    assert json.loads(first["data"])["value"] == "v1"
    assert json.loads(second["data"])["diff"] == {"a": 1}
    assert int(second["id"]) > int(first["id"])


def test_metrics_show_every_front_end(amber_server: ServerProcess) -> None:
    _kvtext(amber_server, b"CREATE m\r\n", 1)
    redis = amber_server.redis()
    redis.ping()
    redis.close()
    with _http(amber_server) as http:
        http.get("/v1/tables")
        deadline = time.monotonic() + 10
        while True:  # RESP counts are folded in once a second
            text = http.get("/metrics").text
            if 'frontend="resp"' in text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    for needle in ('frontend="http"', 'frontend="kvtext"', 'frontend="resp"', "amber_fsyncs"):
        assert needle in text, needle


def test_health_and_openapi_are_served(amber_server: ServerProcess) -> None:
    with _http(amber_server) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert "/v1/watch" in http.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("frontend", ["http", "kvtext"])
def test_sigterm_with_open_clients_exits_promptly(
    server_factory: ServerFactory, frontend: str
) -> None:
    # A short grace period, so a shutdown that waits for it shows at once.
    server = server_factory(env={"AMBER_SHUTDOWN_TIMEOUT": "5"})
    opened: list[Any] = []
    with _http(server) as http:
        if frontend == "http":
            stream = http.stream("GET", "/v1/watch")
            response = stream.__enter__()
            SseReader(response)
            opened.append(stream)
        else:
            sock = socket.create_connection((server.host, server.ports["kvtext"]), timeout=10)
            sock.sendall(b"CREATE b\r\n")
            assert sock.recv(100) == b"OK\r\n"
            opened.append(sock)
        started = time.monotonic()
        assert server.stop(signal.SIGTERM) == 0
        elapsed = time.monotonic() - started
    for thing in opened:
        if isinstance(thing, socket.socket):
            thing.close()
        else:
            thing.__exit__(None, None, None)
    assert elapsed < 4, f"shutdown took {elapsed:.1f}s with an open {frontend} client"
