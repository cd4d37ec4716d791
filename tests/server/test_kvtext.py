"""The KV text protocol: the guide's own tests over raw sockets, and the sans-I/O core."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from http_support import LiveServer

import amber
from amber.server.kvtext.protocol import (
    Create,
    Delete,
    Get,
    Invalid,
    LineReader,
    LineTooLong,
    Put,
    Unknown,
    parse,
    render_value,
)

# -- sans-I/O: KVServer.Command.parse's doctests, and the line reader -------------


@pytest.mark.parametrize(
    ("line", "request_"),
    [
        ("CREATE shopping\r\n", Create("shopping")),
        ("CREATE  shopping  \r\n", Create("shopping")),
        ("PUT shopping milk 1\r\n", Put("shopping", "milk", "1")),
        ("GET shopping milk\r\n", Get("shopping", "milk")),
        ("DELETE shopping eggs\r\n", Delete("shopping", "eggs")),
        ("UNKNOWN shopping eggs\r\n", Unknown("UNKNOWN shopping eggs")),
        ("GET shopping\r\n", Unknown("GET shopping")),
        ("PUT shopping milk 1 2\r\n", Unknown("PUT shopping milk 1 2")),
        ("get shopping milk\r\n", Unknown("get shopping milk")),
        ("\r\n", Unknown("")),
    ],
)
def test_parse_like_the_guide(line: str, request_: object) -> None:
    assert parse(line) == request_


def test_line_reader_splits_joins_and_bounds_lines() -> None:
    reader = LineReader(max_line=20)
    assert reader.feed(b"CREATE a\r\nGET a") == [Create("a")]
    assert reader.pending == 5
    assert reader.feed(b" k\nPUT a k v\r\n") == [Get("a", "k"), Put("a", "k", "v")]
    assert reader.feed(b"\xff\xfe\r\n") == [Invalid("line is not valid UTF-8 (byte 0)")]
    assert reader.feed(b"GET a k\r\n" + b"x" * 21) == [Get("a", "k"), LineTooLong(20)]
    assert reader.feed(b"GET a k\r\n") == []  # the reader is done


def test_render_value_keeps_one_line() -> None:
    assert render_value("3") == "3"
    assert render_value({"a": [1, None]}) == '{"a":[1,null]}'
    assert render_value("two\r\nlines") == '"two\\r\\nlines"'
    assert render_value(None) == "null"


# -- over sockets ---------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "uvloop"])
def server(request: pytest.FixtureRequest) -> Iterator[LiveServer]:
    db = amber.open("memory://")
    with LiveServer(db, max_line=4096, loop=request.param) as live:
        yield live
    db.close()


class Client:
    """Like the guide's ``:gen_tcp`` socket with ``packet: :line``: one line per recv."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line + b"\n"

    def send_and_recv(self, data: bytes) -> bytes:
        self.send(data)
        return self.line()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(server: LiveServer) -> Iterator[Client]:
    connection = Client(server.kvtext_port)
    yield connection
    connection.close()


def test_server_interaction(client: Client, server: LiveServer) -> None:
    """The guide's ``KVServerTest`` "server interaction", line for line."""
    assert client.send_and_recv(b"UNKNOWN shopping\r\n") == b"UNKNOWN COMMAND\r\n"
    assert client.send_and_recv(b"GET shopping eggs\r\n") == b"NOT FOUND\r\n"
    assert client.send_and_recv(b"CREATE shopping\r\n") == b"OK\r\n"
    assert client.send_and_recv(b"PUT shopping eggs 3\r\n") == b"OK\r\n"
    # GET returns two lines
    assert client.send_and_recv(b"GET shopping eggs\r\n") == b"3\r\n"
    assert client.send_and_recv(b"") == b"OK\r\n"
    assert client.send_and_recv(b"DELETE shopping eggs\r\n") == b"OK\r\n"
    # GET returns two lines
    assert client.send_and_recv(b"GET shopping eggs\r\n") == b"\r\n"
    assert client.send_and_recv(b"") == b"OK\r\n"
    # Buckets are Amber tables.
    assert server.db.tables() == ["shopping"]


def test_buckets_are_tables(client: Client, server: LiveServer) -> None:
    server.db.table("docs").put("d", {"a": 1})
    assert client.send_and_recv(b"GET docs d\r\n") == b'{"a":1}\r\n'
    assert client.line() == b"OK\r\n"
    assert client.send_and_recv(b"PUT docs e hello\r\n") == b"OK\r\n"
    assert server.db.table("docs").get("e") == "hello"
    assert client.send_and_recv(b"PUT nowhere k v\r\n") == b"NOT FOUND\r\n"
    assert client.send_and_recv(b"DELETE nowhere k\r\n") == b"NOT FOUND\r\n"
    assert client.send_and_recv(b"CREATE docs\r\n") == b"OK\r\n"  # idempotent
    assert server.db.table("docs").get("d") == {"a": 1}


def test_unknown_commands_and_arity(client: Client) -> None:
    client.send_and_recv(b"CREATE b\r\n")
    lines = (b"GET b\r\n", b"PUT b k\r\n", b"DELETE b\r\n", b"CREATE\r\n", b"\r\n", b"get b k\r\n")
    for line in lines:
        assert client.send_and_recv(line) == b"UNKNOWN COMMAND\r\n", line
    assert client.send_and_recv(b"PUT b k v extra\r\n") == b"UNKNOWN COMMAND\r\n"


def test_invalid_input_is_an_error_line_and_the_connection_lives(client: Client) -> None:
    reply = client.send_and_recv(b"CREATE bad/name\r\n")
    assert reply.startswith(b"ERROR invalid table name")
    assert reply.endswith(b"\r\n") and reply.count(b"\n") == 1
    assert client.send_and_recv(b"\xff\r\n").startswith(b"ERROR line is not valid UTF-8")
    assert client.send_and_recv(b"CREATE good\r\n") == b"OK\r\n"
    long_key = b"k" * 1100
    assert client.send_and_recv(b"PUT good " + long_key + b" v\r\n").startswith(b"ERROR")


def test_pipelined_and_fragmented_requests_answer_in_order(client: Client) -> None:
    requests = b"".join(
        [b"CREATE p\r\n"] + [b"PUT p k%d %d\r\n" % (n, n) for n in range(200)] + [b"GET p k199\n"]
    )
    for start in range(0, len(requests), 7):  # bytes trickle in
        client.send(requests[start : start + 7])
    replies = [client.line() for _ in range(1 + 200 + 2)]
    assert replies == [b"OK\r\n"] * 201 + [b"199\r\n", b"OK\r\n"]


def test_a_line_too_long_is_refused_and_closes(client: Client) -> None:
    client.send(b"CREATE b\r\nPUT b k " + b"v" * 5000)
    assert client.line() == b"OK\r\n"
    assert client.line() == b"ERROR line longer than 4096 bytes; closing\r\n"
    with pytest.raises((EOFError, ConnectionResetError)):
        client.line()


def test_half_close_answers_then_closes(server: LiveServer) -> None:
    client = Client(server.kvtext_port)
    client.send(b"CREATE b\r\nPUT b k v\r\nGET b k\r\n")
    client.sock.shutdown(socket.SHUT_WR)
    assert [client.line() for _ in range(4)] == [b"OK\r\n", b"OK\r\n", b"v\r\n", b"OK\r\n"]
    with pytest.raises(EOFError):
        client.line()
    client.close()


def test_connections_and_requests_are_measured(server: LiveServer) -> None:
    clients = [Client(server.kvtext_port) for _ in range(3)]
    for c in clients:
        assert c.send_and_recv(b"CREATE m\r\n") == b"OK\r\n"
    assert server.gauge("amber_connections", frontend="kvtext") == 3
    assert clients[0].send_and_recv(b"NOPE\r\n") == b"UNKNOWN COMMAND\r\n"
    for c in clients:
        c.close()
    deadline = time.monotonic() + 5
    while server.gauge("amber_connections", frontend="kvtext"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    metrics = server.ctx.metrics.registry
    created = {"frontend": "kvtext", "command": "CREATE", "outcome": "ok"}
    unknown = {"frontend": "kvtext", "command": "UNKNOWN", "outcome": "error"}
    assert metrics.get_sample_value("amber_requests_total", created) == 3
    assert metrics.get_sample_value("amber_requests_total", unknown) == 1


def test_closing_the_listener_closes_idle_connections(server: LiveServer) -> None:
    client = Client(server.kvtext_port)
    assert client.send_and_recv(b"CREATE x\r\n") == b"OK\r\n"
    assert server.kvtext is not None
    server.call(server.kvtext.close)
    with pytest.raises((EOFError, ConnectionResetError)):
        client.line()
    client.close()
    with pytest.raises(OSError):
        Client(server.kvtext_port).send_and_recv(b"CREATE y\r\n")


def test_writes_are_durable_before_ok(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    db = amber.open(tmp_path / "db", durability="always")
    with LiveServer(db) as live:
        client = Client(live.kvtext_port)
        assert client.send_and_recv(b"CREATE d\r\n") == b"OK\r\n"
        assert client.send_and_recv(b"PUT d k 1\r\n") == b"OK\r\n"
        fsyncs = db.stats()["pipeline"]["fsyncs"]
        client.close()
    db.close()
    assert fsyncs >= 1
    with amber.open(tmp_path / "db") as again:
        assert again.table("d").get("k") == "1"
