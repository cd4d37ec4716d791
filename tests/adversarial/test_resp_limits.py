"""Issue #12 item 5b: a RESP header over the request limit is refused at once.

A bulk length larger than ``max_request_bytes`` (or an absurd argument count)
used to be believed: the server buffered what followed until the limit was
reached. It must answer a protocol error (Redis' text: ``invalid bulk length``,
``invalid multibulk length``) as soon as the header arrives, and close.
"""

from __future__ import annotations

import socket
import time

import pytest
from attack_support import PingWatch, SandboxedFactory, ServerProcess, assert_responsive, rss_bytes

RESP_ONLY = ("--port", "0", "--http-port", "-1", "--kvtext-port", "-1")


def raw(server: ServerProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=5)


def reply_within(sock: socket.socket, seconds: float) -> tuple[bytes, float, bool]:
    """What arrives within ``seconds``, when its first line did, and whether it then closed."""
    started = time.monotonic()
    deadline = started + seconds
    got = b""
    first_line = float("inf")
    closed = False
    sock.settimeout(0.05)
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += chunk
        if b"\r\n" in got and first_line == float("inf"):
            first_line = time.monotonic() - started
    return got, first_line, closed


@pytest.fixture
def server(server_factory: SandboxedFactory) -> ServerProcess:
    return server_factory(ports=RESP_ONLY)


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (b"*1\r\n$999999999999\r\n", b"-ERR Protocol error: invalid bulk length"),
        (
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999\r\n",
            b"-ERR Protocol error: invalid bulk length",
        ),
        (b"*1000000000\r\n", b"-ERR Protocol error: invalid multibulk length"),
        (b"*4000000000\r\n$3\r\nSET\r\n", b"-ERR Protocol error: invalid multibulk length"),
    ],
)
def test_an_oversized_header_is_refused_at_once(
    server: ServerProcess, header: bytes, error: bytes
) -> None:
    with PingWatch(server) as watch, raw(server) as sock:
        sock.sendall(header)
        got, took, closed = reply_within(sock, 2.0)
        time.sleep(0.3)  # let the watch ping at least once
    watch.assert_ok()
    assert got.startswith(error), got
    assert took < 1.0, f"the error took {took:.2f} s"
    assert closed, "the connection stayed open"
    assert_responsive(server)


def test_a_split_header_and_the_commands_before_it(server: ServerProcess) -> None:
    with raw(server) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n*1\r\n$99999")
        time.sleep(0.2)
        sock.sendall(b"9999999\r\n")
        got, took, closed = reply_within(sock, 2.0)
    assert got.startswith(b"+PONG\r\n-ERR Protocol error: invalid bulk length"), got
    assert took < 1.0 and closed


def test_the_payload_of_a_refused_header_is_never_buffered(server: ServerProcess) -> None:
    client = server.redis()
    client.set("t:k", "v")  # warm up before measuring
    before = rss_bytes(server.proc.pid)
    chunk = b"x" * (1 << 20)
    with PingWatch(server) as watch, raw(server) as sock:
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$3\r\nt:k\r\n$999999999999\r\n")
        started = time.monotonic()
        sent = 0
        try:
            for _ in range(48):  # 48 MiB, under the default 64 MiB request limit
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server closed the connection: what it should do
        got, _took, _closed = reply_within(sock, 1.0)
        took = time.monotonic() - started
        time.sleep(0.3)
    watch.assert_ok()
    grown = rss_bytes(server.proc.pid) - before
    assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB after {sent} bytes"
    assert got.startswith(b"-ERR Protocol error: invalid bulk length"), (got[:80], took)
    assert client.get("t:k") == b"v"
    assert_responsive(server)
    client.close()


def test_legitimate_large_values_still_pass(server: ServerProcess) -> None:
    client = server.redis()
    value = b"$999999999999\r\n*4000000000\r\n" * 1000  # header-like bytes inside a value
    assert client.set("t:big", value + b"y" * (2 << 20)) is True
    assert client.get("t:big") == value + b"y" * (2 << 20)
    client.close()
