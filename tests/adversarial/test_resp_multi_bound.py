"""A MULTI block is bounded per connection, in commands and in bytes.

Found auditing issue #12 (its rule: every buffer and queue is bounded per
connection): a client could MULTI and then queue values without end, each
read within ``max_request_bytes`` but the queue unbounded (40 x 8 MiB held
~420 MB), and EXEC ran however many commands were queued in one turn of the
event loop (50,000 INCRs stalled PING 6 s). A block now holds at most
``MAX_MULTI_COMMANDS`` commands and ``max_batch_bytes`` of arguments; past
either the command is refused, the queue released, and EXEC answers
EXECABORT.
"""

from __future__ import annotations

import socket

import pytest
from attack_support import (
    PingWatch,
    SandboxedFactory,
    ServerProcess,
    assert_responsive,
    pack,
    read_until,
    rss_bytes,
)

from amber.server.commands.session import MAX_MULTI_COMMANDS

MIB = 1024 * 1024
FULL = b"-ERR MULTI queue is full"


@pytest.fixture
def server(server_factory: SandboxedFactory) -> ServerProcess:
    return server_factory("--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"))


def test_queued_values_are_bounded_in_bytes(server: ServerProcess) -> None:
    value = b"v" * (8 * MIB)
    server.redis().set("t:warm", value)  # warm up before measuring
    before = rss_bytes(server.proc.pid)
    with PingWatch(server) as watch, socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(pack(b"MULTI"))
        assert read_until(sock, b"+OK\r\n", at_end=True) == b"+OK\r\n"
        replies = []
        for i in range(24):  # 192 MiB against the 64 MiB transaction limit
            sock.sendall(pack(b"SET", b"t:k%d" % i, value))
            replies.append(read_until(sock, b"\r\n", at_end=True))
        grown = rss_bytes(server.proc.pid) - before
        sock.sendall(pack(b"EXEC"))
        executed = read_until(sock, b"\r\n", at_end=True)
    watch.assert_ok()
    assert replies[0] == b"+QUEUED\r\n"
    assert any(reply.startswith(FULL) for reply in replies), replies
    assert grown < 120 * MIB, f"RSS grew {grown / MIB:.0f} MiB"
    assert executed.startswith(b"-EXECABORT")
    client = server.redis()
    assert client.exists(*[f"t:k{i}" for i in range(24)]) == 0  # nothing of it ran
    assert client.get("t:warm") == value
    assert_responsive(server)


def test_queued_commands_are_bounded_in_count(server: ServerProcess) -> None:
    with socket.create_connection((server.host, server.port)) as sock:
        # At the limit the block runs, and EXEC's one turn does not stall others.
        sock.sendall(pack(b"MULTI") + pack(b"INCR", b"t:n") * MAX_MULTI_COMMANDS)
        read_until(sock, b"+OK\r\n" + b"+QUEUED\r\n" * MAX_MULTI_COMMANDS, at_end=True)
        with PingWatch(server) as watch:
            sock.sendall(pack(b"EXEC"))
            read_until(sock, b":%d\r\n" % MAX_MULTI_COMMANDS, at_end=True)
        watch.assert_ok()
        # One more is refused, and the block is discarded.
        sock.sendall(pack(b"MULTI") + pack(b"INCR", b"t:n") * (MAX_MULTI_COMMANDS + 1))
        got = read_until(sock, b"discarded\r\n", at_end=True)
        assert got.split(b"\r\n")[MAX_MULTI_COMMANDS + 1].startswith(FULL)
        sock.sendall(pack(b"EXEC"))
        assert read_until(sock, b"\r\n", at_end=True).startswith(b"-EXECABORT")
    assert server.redis().get("t:n") == str(MAX_MULTI_COMMANDS).encode()
    assert_responsive(server)
