"""Issue #12 item 7: with ``--requirepass`` only AUTH, HELLO … AUTH, QUIT and RESET run first.

Subscribing used to be allowed before AUTH (so was PING and CLIENT): an
unauthenticated client could PSUBSCRIBE ``*`` and read every message and
keyspace notification. The errors are redis-server 7.0.15's.
"""

from __future__ import annotations

import socket
import time

import pytest
import redis
from attack_support import (
    PingWatch,
    SandboxedFactory,
    ServerProcess,
    assert_responsive,
    pack,
)

PASSWORD = "s3cret"
NOAUTH = b"-NOAUTH Authentication required.\r\n"
HELLO_NOAUTH = (
    b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the "
    b"HELLO AUTH <user> <pass> option can be used to authenticate the client and select "
    b"the RESP protocol version at the same time\r\n"
)


def raw(server: ServerProcess) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=5)


def read_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def read_for(sock: socket.socket, seconds: float) -> bytes:
    """Everything that arrives within ``seconds``."""
    sock.settimeout(0.1)
    got = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        got += chunk
    return got


@pytest.fixture
def locked(server_factory: SandboxedFactory) -> ServerProcess:
    server = server_factory("--requirepass", PASSWORD)
    authed = server.redis(password=PASSWORD)
    authed.config_set("notify-keyspace-events", "KEA")
    authed.close()
    return server


@pytest.mark.parametrize(
    "command",
    [
        (b"PSUBSCRIBE", b"*"),
        (b"SUBSCRIBE", b"news"),
        (b"SUBSCRIBE", b"__keyspace@0__:t:k"),
        (b"PSUBSCRIBE", b"__key*"),
    ],
)
def test_unauthenticated_subscribe_is_refused_and_receives_nothing(
    locked: ServerProcess, command: tuple[bytes, ...]
) -> None:
    with raw(locked) as sock, PingWatch(locked, password=PASSWORD) as watch:
        sock.sendall(pack(*command))
        assert read_line(sock) == NOAUTH
        publisher = locked.redis(password=PASSWORD)
        publisher.publish("news", "secret message")
        publisher.set("t:k", "secret value")
        publisher.close()
        assert read_for(sock, 0.5) == b""  # no message, no notification
        sock.sendall(b"PING\r\n")
        assert read_line(sock) == NOAUTH  # not in subscribed mode either
    watch.assert_ok()
    assert_responsive(locked, password=PASSWORD)


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ((b"PING",), NOAUTH),
        ((b"PING", b"hi"), NOAUTH),
        ((b"UNSUBSCRIBE",), NOAUTH),
        ((b"PUNSUBSCRIBE",), NOAUTH),
        ((b"CLIENT", b"LIST"), NOAUTH),
        ((b"CLIENT", b"ID"), NOAUTH),
        ((b"CLIENT", b"SETNAME", b"x"), NOAUTH),
        ((b"CLIENT", b"SETINFO", b"LIB-NAME", b"x"), NOAUTH),
        ((b"CLIENT", b"KILL", b"ID", b"1"), NOAUTH),
        ((b"AMBER.WATCH", b"*"), NOAUTH),
        ((b"HELLO",), HELLO_NOAUTH),
        ((b"HELLO", b"3"), HELLO_NOAUTH),
        ((b"HELLO", b"3", b"SETNAME", b"x"), HELLO_NOAUTH),
    ],
)
def test_only_auth_hello_auth_quit_and_reset_run_unauthenticated(
    locked: ServerProcess, command: tuple[bytes, ...], reply: bytes
) -> None:
    with raw(locked) as sock:
        sock.sendall(pack(*command))
        assert read_line(sock) == reply
        # The session is still unauthenticated and in RESP2 (HELLO 3 changed nothing).
        sock.sendall(pack(b"GET", b"t:k"))
        assert read_line(sock) == NOAUTH
        sock.sendall(pack(b"RESET"))
        assert read_line(sock) == b"+RESET\r\n"
        sock.sendall(pack(b"HELLO", b"3", b"AUTH", b"default", PASSWORD.encode()))
        assert sock.recv(1) == b"%"  # a RESP3 map: authenticated and switched
        read_for(sock, 0.2)
        sock.sendall(pack(b"PING"))
        assert read_line(sock) == b"+PONG\r\n"
        sock.sendall(pack(b"QUIT"))
        assert read_line(sock) == b"+OK\r\n"


def test_authenticated_clients_still_subscribe(locked: ServerProcess) -> None:
    client = locked.redis(password=PASSWORD)
    pubsub = client.pubsub()
    pubsub.psubscribe("*")
    assert pubsub.get_message(timeout=5)["type"] == "psubscribe"
    locked.redis(password=PASSWORD).publish("news", "hello")
    message = pubsub.get_message(timeout=5)
    assert message is not None and message["data"] == b"hello"
    pubsub.close()
    assert client.client_id() > 0
    with pytest.raises(redis.AuthenticationError):
        locked.redis().ping()
    client.close()
