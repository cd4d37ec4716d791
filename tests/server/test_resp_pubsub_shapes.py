"""The exact pub/sub replies of a real ``amber serve``, as Redis 7 sends them.

Raw sockets: commands go out as RESP arrays, replies are parsed with
hiredis (which returns RESP3 push messages as ``hiredis.PushNotification``,
a ``list`` subclass, and RESP2 arrays as plain lists), and where the
encoding itself matters the bytes are compared exactly (``*`` vs ``>``,
``$-1`` vs ``_``). Channel names are unique per test: most tests share one
server.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import hiredis
import pytest

pytestmark = pytest.mark.timeout(60)

RESP_ONLY = ("--port", "0", "--http-port", "-1", "--kvtext-port", "-1")
#: The longest a reply may take.
WAIT_S = 10.0
#: How long "nothing more arrives" is watched for.
QUIET_S = 0.1
SUBSCRIBED_ONLY = (
    "ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
    "are allowed in this context"
)


def pack(*args: str | bytes) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def push(*items: Any) -> bytes:
    """The RESP3 push ``>`` of bulk strings, ints and nulls."""
    return _aggregate(b">", items)


def array(*items: Any) -> bytes:
    """The RESP2 array ``*`` of bulk strings, ints and nulls (``$-1``)."""
    return _aggregate(b"*", items)


def _aggregate(kind: bytes, items: tuple[Any, ...]) -> bytes:
    out = [kind + b"%d\r\n" % len(items)]
    for item in items:
        if item is None:
            out.append(b"_\r\n" if kind == b">" else b"$-1\r\n")
        elif isinstance(item, int):
            out.append(b":%d\r\n" % item)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(item), item))
    return b"".join(out)


class Conn:
    """One raw RESP connection to the server."""

    def __init__(self, server: Any, protocol: int = 2) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=WAIT_S)
        self.reader = hiredis.Reader()
        if protocol == 3:
            hello = self.call("HELLO", "3")
            assert isinstance(hello, dict) and hello[b"proto"] == 3

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, *args: str | bytes) -> None:
        self.sock.sendall(pack(*args))

    def _recv(self, timeout: float) -> bytes:
        self.sock.settimeout(max(timeout, 0.001))
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def read(self) -> Any:
        """The next reply or push message."""
        deadline = time.monotonic() + WAIT_S
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            left = deadline - time.monotonic()
            assert left > 0, "no reply in time"
            self.reader.feed(self._recv(left))

    def read_n(self, n: int) -> list[Any]:
        return [self.read() for _ in range(n)]

    def call(self, *args: str | bytes) -> Any:
        self.send(*args)
        return self.read()

    def take(self, size: int) -> bytes:
        """Exactly the next ``size`` bytes off the wire (what follows is parsed later)."""
        assert not self.reader.has_data(), "unread replies"
        data = b""
        deadline = time.monotonic() + WAIT_S
        while len(data) < size:
            left = deadline - time.monotonic()
            assert left > 0, f"only {data!r} in time"
            data += self._recv(left)
        if len(data) > size:
            self.reader.feed(data[size:])
        return data[:size]

    def wire(self, *args: str | bytes, size: int) -> bytes:
        """Send a command and return exactly the next ``size`` bytes."""
        self.send(*args)
        return self.take(size)

    def quiet(self, wait: float = QUIET_S) -> bool:
        """Whether nothing at all arrives within ``wait`` seconds."""
        if self.reader.gets() is not False:
            return False
        try:
            data = self._recv(wait)
        except TimeoutError:
            return True
        self.reader.feed(data)
        return False


@pytest.fixture
def connect(amber_server: Any) -> Iterator[Callable[..., Conn]]:
    """Open connections to the shared server; all closed after the test."""
    opened: list[Conn] = []

    def open_(protocol: int = 2) -> Conn:
        conn = Conn(amber_server, protocol)
        opened.append(conn)
        return conn

    yield open_
    for conn in opened:
        conn.close()


def wait_for(check: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def numsub(conn: Conn, *channels: str) -> list[Any]:
    reply = conn.call("PUBSUB", "NUMSUB", *channels)
    assert isinstance(reply, list)
    return reply


def is_push(reply: Any) -> bool:
    return isinstance(reply, hiredis.PushNotification)


# -- RESP2 ----------------------------------------------------------------------------


def test_subscribe_confirms_each_channel_with_a_running_count(connect: Any) -> None:
    sub = connect()
    expected = array(b"subscribe", b"sc:a", 1) + array(b"subscribe", b"sc:b", 2)
    assert sub.wire("SUBSCRIBE", "sc:a", "sc:b", size=len(expected)) == expected
    # Again: confirmed again, the count unchanged (a set, as in Redis).
    assert sub.call("SUBSCRIBE", "sc:a") == [b"subscribe", b"sc:a", 2]
    replies = [sub.call("PSUBSCRIBE", "sc:p*", "sc:q?"), sub.read()]
    assert replies == [[b"psubscribe", b"sc:p*", 3], [b"psubscribe", b"sc:q?", 4]]
    assert not any(is_push(r) for r in replies)  # RESP2: arrays
    # A pattern and a channel of the same name are two subscriptions.
    assert sub.call("PSUBSCRIBE", "sc:a") == [b"psubscribe", b"sc:a", 5]
    assert sub.call("UNSUBSCRIBE", "sc:never") == [b"unsubscribe", b"sc:never", 5]
    assert sub.call("PUNSUBSCRIBE", "sc:a") == [b"punsubscribe", b"sc:a", 4]
    assert sub.quiet()


def test_subscribe_needs_a_channel(connect: Any) -> None:
    conn = connect()
    for name in ("subscribe", "psubscribe"):
        error = conn.call(name.upper())
        assert isinstance(error, hiredis.ReplyError)
        assert str(error) == f"ERR wrong number of arguments for '{name}' command"
    assert conn.call("PING") == b"PONG"  # not in subscribed mode


def test_unsubscribe_without_arguments_leaves_every_channel(connect: Any) -> None:
    sub = connect()
    sub.send("SUBSCRIBE", "ua:a", "ua:b")
    assert sub.read_n(2) == [[b"subscribe", b"ua:a", 1], [b"subscribe", b"ua:b", 2]]
    replies = [sub.call("UNSUBSCRIBE"), sub.read()]
    # One reply per channel, counts down to 0 (Redis does not promise an order).
    assert sorted(r[1] for r in replies) == [b"ua:a", b"ua:b"]
    assert [(r[0], r[2]) for r in replies] == [(b"unsubscribe", 1), (b"unsubscribe", 0)]
    assert sub.quiet()
    # Nothing subscribed: the connection is back to normal.
    assert sub.call("PING") == b"PONG"
    assert sub.call("SET", "ua:k", "v") == b"OK"
    assert sub.call("GET", "ua:k") == b"v"


def test_unsubscribe_without_arguments_keeps_the_patterns(connect: Any) -> None:
    sub = connect()
    sub.send("SUBSCRIBE", "up:a", "up:b")
    sub.read_n(2)
    assert sub.call("PSUBSCRIBE", "up:*") == [b"psubscribe", b"up:*", 3]
    replies = [sub.call("UNSUBSCRIBE"), sub.read()]
    assert [r[2] for r in replies] == [2, 1]  # the pattern still counts
    assert sub.call("UNSUBSCRIBE") == [b"unsubscribe", None, 1]
    error = sub.call("GET", "up:k")  # still subscribed (to the pattern)
    assert isinstance(error, hiredis.ReplyError)
    assert sub.call("PUNSUBSCRIBE") == [b"punsubscribe", b"up:*", 0]
    assert sub.call("GET", "up:k") is None


def test_unsubscribe_with_nothing_subscribed_answers_a_null_channel(connect: Any) -> None:
    conn = connect()
    for kind in (b"unsubscribe", b"punsubscribe"):
        expected = array(kind, None, 0)  # *3 $n kind $-1 :0
        assert conn.wire(kind.upper(), size=len(expected)) == expected
    # That did not enter subscribed mode.
    assert conn.call("PING") == b"PONG"
    assert conn.call("GET", "un:nothing") is None


def test_punsubscribe_without_arguments_leaves_every_pattern(connect: Any) -> None:
    sub = connect()
    sub.send("PSUBSCRIBE", "pu:a*", "pu:b*")
    assert sub.read_n(2) == [[b"psubscribe", b"pu:a*", 1], [b"psubscribe", b"pu:b*", 2]]
    assert sub.call("SUBSCRIBE", "pu:c") == [b"subscribe", b"pu:c", 3]
    replies = [sub.call("PUNSUBSCRIBE"), sub.read()]
    assert sorted(r[1] for r in replies) == [b"pu:a*", b"pu:b*"]
    assert [(r[0], r[2]) for r in replies] == [(b"punsubscribe", 2), (b"punsubscribe", 1)]
    assert sub.call("PUNSUBSCRIBE") == [b"punsubscribe", None, 1]  # the channel counts
    assert sub.call("UNSUBSCRIBE") == [b"unsubscribe", b"pu:c", 0]
    assert sub.quiet()


def test_messages_reach_channel_and_pattern_subscribers(connect: Any) -> None:
    channel, pattern, both, publisher = connect(), connect(), connect(), connect()
    assert channel.call("SUBSCRIBE", "ms:news") == [b"subscribe", b"ms:news", 1]
    assert pattern.call("PSUBSCRIBE", "ms:n*") == [b"psubscribe", b"ms:n*", 1]
    assert both.call("SUBSCRIBE", "ms:news") == [b"subscribe", b"ms:news", 1]
    assert both.call("PSUBSCRIBE", "ms:n*") == [b"psubscribe", b"ms:n*", 2]

    # One delivery per subscription: `both` counts twice.
    assert publisher.call("PUBLISH", "ms:news", "hello") == 4
    message = array(b"message", b"ms:news", b"hello")
    pmessage = array(b"pmessage", b"ms:n*", b"ms:news", b"hello")
    assert channel.read() == [b"message", b"ms:news", b"hello"]
    assert pattern.read() == [b"pmessage", b"ms:n*", b"ms:news", b"hello"]
    assert both.read_n(2) == [  # the channel's subscribers first, as in Redis
        [b"message", b"ms:news", b"hello"],
        [b"pmessage", b"ms:n*", b"ms:news", b"hello"],
    ]
    # The exact bytes: RESP2 arrays (PING too, in subscribed mode).
    pong = b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    assert channel.wire("PING", size=len(pong)) == pong
    assert publisher.call("PUBLISH", "ms:news", "hello") == 4
    assert channel.take(len(message)) == message
    assert pattern.take(len(pmessage)) == pmessage
    assert both.take(len(message + pmessage)) == message + pmessage

    # Only the pattern matches; binary payloads pass untouched.
    payload = b"\x00\r\n\xff bin"
    assert publisher.call("PUBLISH", "ms:nope", payload) == 2
    assert pattern.read() == [b"pmessage", b"ms:n*", b"ms:nope", payload]
    assert both.read() == [b"pmessage", b"ms:n*", b"ms:nope", payload]
    assert publisher.call("PUBLISH", "ms:other", "x") == 0
    assert channel.quiet() and pattern.quiet() and both.quiet()


def test_resp2_subscribed_client_may_only_run_pubsub_commands(connect: Any) -> None:
    sub, publisher = connect(), connect()
    assert sub.call("SUBSCRIBE", "rs:c") == [b"subscribe", b"rs:c", 1]
    for command in (("GET", "rs:k"), ("SET", "rs:k", "v"), ("HELLO", "3")):
        error = sub.call(*command)
        assert isinstance(error, hiredis.ReplyError)
        assert str(error) == SUBSCRIBED_ONLY.format(command[0].lower())
    # Still connected and still subscribed.
    assert sub.call("PING") == [b"pong", b""]
    assert sub.call("PING", "hi") == [b"pong", b"hi"]
    assert publisher.call("PUBLISH", "rs:c", "m") == 1
    assert sub.read() == [b"message", b"rs:c", b"m"]
    assert publisher.call("GET", "rs:k") is None  # the rejected SET did nothing
    # A pipeline: the GET after SUBSCRIBE is refused, the GET after UNSUBSCRIBE runs.
    sub.sock.sendall(
        pack("SUBSCRIBE", "rs:d")
        + pack("GET", "rs:k")
        + pack("UNSUBSCRIBE")
        + pack("SET", "rs:k", "v")
        + pack("GET", "rs:k")
    )
    replies = sub.read_n(6)
    assert replies[0] == [b"subscribe", b"rs:d", 2]
    assert str(replies[1]) == SUBSCRIBED_ONLY.format("get")
    assert sorted(r[1] for r in replies[2:4]) == [b"rs:c", b"rs:d"]
    assert [r[2] for r in replies[2:4]] == [1, 0]
    assert replies[4:] == [b"OK", b"v"]


def test_reset_leaves_subscribed_mode(connect: Any) -> None:
    sub, other = connect(), connect()
    sub.send("SUBSCRIBE", "rr:a", "rr:b")
    sub.read_n(2)
    assert sub.call("PSUBSCRIBE", "rr:*") == [b"psubscribe", b"rr:*", 3]
    assert sub.call("RESET") == b"RESET"
    assert sub.call("GET", "rr:k") is None
    assert numsub(other, "rr:a", "rr:b") == [b"rr:a", 0, b"rr:b", 0]
    assert other.call("PUBLISH", "rr:a", "x") == 0
    assert sub.quiet()


@pytest.mark.parametrize("close", ["close", "reset", "quit"])
def test_a_disconnected_subscriber_is_forgotten(connect: Any, close: str) -> None:
    sub, other = connect(), connect()
    channel, pattern = f"dc:{close}", f"dc:{close}:*"
    assert sub.call("SUBSCRIBE", channel) == [b"subscribe", channel.encode(), 1]
    assert sub.call("PSUBSCRIBE", pattern) == [b"psubscribe", pattern.encode(), 2]
    assert numsub(other, channel) == [channel.encode(), 1]
    assert other.call("PUBLISH", f"{channel}:x", "m") == 1
    assert sub.read() == [b"pmessage", pattern.encode(), f"{channel}:x".encode(), b"m"]
    if close == "quit":
        assert sub.call("QUIT") == b"OK"
        with pytest.raises(ConnectionError):
            sub.read()
    elif close == "reset":  # RST instead of FIN
        sub.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sub.close()
    wait_for(lambda: numsub(other, channel) == [channel.encode(), 0])
    wait_for(lambda: other.call("PUBLISH", f"{channel}:x", "m") == 0)
    assert other.call("PUBLISH", channel, "m") == 0
    assert channel.encode() not in other.call("PUBSUB", "CHANNELS", "dc:*")


def test_pubsub_numsub_numpat_and_channels(server_factory: Any) -> None:
    server = server_factory(ports=RESP_ONLY)  # its own: NUMPAT counts the whole server
    conns = [Conn(server) for _ in range(4)]
    a, b, c, admin = conns
    try:
        assert admin.call("PUBSUB", "NUMPAT") == 0
        assert numsub(admin) == []
        assert numsub(admin, "x", "y") == [b"x", 0, b"y", 0]
        assert admin.call("PUBSUB", "CHANNELS") == []

        a.send("SUBSCRIBE", "x", "y")
        a.read_n(2)
        assert b.call("SUBSCRIBE", "x") == [b"subscribe", b"x", 1]
        assert numsub(admin, "x", "y", "z", "x") == [b"x", 2, b"y", 1, b"z", 0, b"x", 2]
        assert sorted(admin.call("PUBSUB", "CHANNELS")) == [b"x", b"y"]
        assert admin.call("PUBSUB", "CHANNELS", "y*") == [b"y"]

        # NUMPAT counts distinct patterns, not subscriptions (Redis 7).
        assert a.call("PSUBSCRIBE", "p*") == [b"psubscribe", b"p*", 3]
        assert c.call("PSUBSCRIBE", "p*") == [b"psubscribe", b"p*", 1]
        assert admin.call("PUBSUB", "NUMPAT") == 1
        assert c.call("PSUBSCRIBE", "q*") == [b"psubscribe", b"q*", 2]
        assert admin.call("PUBSUB", "NUMPAT") == 2
        # Patterns are no channels.
        assert numsub(admin, "p*") == [b"p*", 0]

        assert a.call("PUNSUBSCRIBE", "p*") == [b"punsubscribe", b"p*", 2]
        assert admin.call("PUBSUB", "NUMPAT") == 2  # c still has it
        c.close()
        wait_for(lambda: admin.call("PUBSUB", "NUMPAT") == 0)
        b.close()
        wait_for(lambda: numsub(admin, "x") == [b"x", 1])
        a.close()
        wait_for(lambda: numsub(admin, "x", "y") == [b"x", 0, b"y", 0])
        assert admin.call("PUBSUB", "CHANNELS") == []
    finally:
        for conn in conns:
            conn.close()


# -- RESP3 ----------------------------------------------------------------------------


def test_resp3_confirmations_and_messages_are_push_messages(connect: Any) -> None:
    sub, publisher = connect(3), connect(3)
    expected = push(b"subscribe", b"r3:a", 1) + push(b"subscribe", b"r3:b", 2)
    assert sub.wire("SUBSCRIBE", "r3:a", "r3:b", size=len(expected)) == expected
    expected = push(b"psubscribe", b"r3:*", 3)
    assert sub.wire("PSUBSCRIBE", "r3:*", size=len(expected)) == expected

    assert publisher.call("PUBLISH", "r3:a", "hi") == 2
    message, pmessage = sub.read_n(2)
    assert is_push(message) and message == [b"message", b"r3:a", b"hi"]
    assert is_push(pmessage) and pmessage == [b"pmessage", b"r3:*", b"r3:a", b"hi"]
    assert publisher.call("PUBLISH", "r3:zz", "hey") == 1
    expected = push(b"pmessage", b"r3:*", b"r3:zz", b"hey")
    assert sub.take(len(expected)) == expected
    assert publisher.call("PUBLISH", "r3:b", "yo") == 2
    expected = push(b"message", b"r3:b", b"yo") + push(b"pmessage", b"r3:*", b"r3:b", b"yo")
    assert sub.take(len(expected)) == expected

    # RESP3 has no subscribed mode: every command runs, and replies are no pushes.
    assert sub.call("PING") == b"PONG"
    assert sub.call("SET", "r3:k", "v") == b"OK"
    reply = sub.call("GET", "r3:k")
    assert reply == b"v" and not is_push(reply)
    assert sub.wire("GET", "r3:missing", size=3) == b"_\r\n"

    replies = [sub.call("UNSUBSCRIBE"), sub.read()]
    assert all(is_push(r) for r in replies)
    assert sorted(r[1] for r in replies) == [b"r3:a", b"r3:b"]
    assert [(r[0], r[2]) for r in replies] == [(b"unsubscribe", 2), (b"unsubscribe", 1)]
    expected = push(b"unsubscribe", None, 1)  # >3 … _ :1
    assert sub.wire("UNSUBSCRIBE", size=len(expected)) == expected
    expected = push(b"punsubscribe", b"r3:*", 0)
    assert sub.wire("PUNSUBSCRIBE", size=len(expected)) == expected
    expected = push(b"punsubscribe", None, 0)
    assert sub.wire("PUNSUBSCRIBE", size=len(expected)) == expected
    assert publisher.call("PUBLISH", "r3:a", "gone") == 0
    assert sub.quiet()


def test_resp3_unsubscribe_with_nothing_subscribed(connect: Any) -> None:
    conn = connect(3)
    for kind in (b"unsubscribe", b"punsubscribe"):
        expected = push(kind, None, 0)
        assert conn.wire(kind.upper(), size=len(expected)) == expected
    assert conn.call("GET", "r3n:k") is None


def test_resp3_numsub_is_an_array(connect: Any) -> None:
    sub, admin = connect(3), connect(3)
    assert sub.call("SUBSCRIBE", "r3n:c") == [b"subscribe", b"r3n:c", 1]
    expected = array(b"r3n:c", 1, b"r3n:d", 0)
    assert admin.wire("PUBSUB", "NUMSUB", "r3n:c", "r3n:d", size=len(expected)) == expected


@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_pubsub_reads_the_replies(amber_server: Any, protocol: int) -> None:
    client = amber_server.redis(protocol=protocol)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe("rp:c")
        pubsub.psubscribe("rp:*")
        got = [pubsub.get_message(timeout=WAIT_S) for _ in range(2)]
        assert got == [
            {"type": "subscribe", "pattern": None, "channel": b"rp:c", "data": 1},
            {"type": "psubscribe", "pattern": None, "channel": b"rp:*", "data": 2},
        ]
        assert client.pubsub_numsub("rp:c") == [(b"rp:c", 1)]
        assert client.publish("rp:c", "x") == 2
        got = [pubsub.get_message(timeout=WAIT_S) for _ in range(2)]
        assert got == [
            {"type": "message", "pattern": None, "channel": b"rp:c", "data": b"x"},
            {"type": "pmessage", "pattern": b"rp:*", "channel": b"rp:c", "data": b"x"},
        ]
        pubsub.unsubscribe()
        pubsub.punsubscribe()
        got = [pubsub.get_message(timeout=WAIT_S) for _ in range(2)]
        assert got == [
            {"type": "unsubscribe", "pattern": None, "channel": b"rp:c", "data": 1},
            {"type": "punsubscribe", "pattern": None, "channel": b"rp:*", "data": 0},
        ]
        assert client.pubsub_numsub("rp:c") == [(b"rp:c", 0)]
    finally:
        pubsub.close()
        client.close()


# -- AMBER.WATCH -------------------------------------------------------------------------


def test_amber_watch_counts_as_a_subscription(connect: Any) -> None:
    sub, writer = connect(), connect()
    assert sub.call("AMBER.WATCH", "aw:*") == [b"amber.watch", b"aw:*", 1]
    assert sub.call("SUBSCRIBE", "aw:chan") == [b"subscribe", b"aw:chan", 2]
    error = sub.call("GET", "aw:k")
    assert str(error) == SUBSCRIBED_ONLY.format("get")
    assert writer.call("SET", "aw:k", "1") == b"OK"
    event = sub.read()
    assert not is_push(event) and len(event) == 7
    assert event[:2] == [b"amber.watch", b"aw:*"] and isinstance(event[2], int)
    assert event[3:] == [b"aw:k", b"put", b'"1"', b'"1"']
    assert sub.call("AMBER.UNWATCH") == [b"amber.unwatch", b"aw:*", 1]
    assert sub.call("AMBER.UNWATCH") == [b"amber.unwatch", None, 1]
    assert sub.call("UNSUBSCRIBE") == [b"unsubscribe", b"aw:chan", 0]
    assert writer.call("SET", "aw:k", "2") == b"OK"
    assert sub.call("GET", "aw:k") == b"2"  # no event came: the watch is gone
    assert sub.quiet()


# -- where Amber once differed from Redis 7 -------------------------------------------------


def test_resp2_subscribed_client_cannot_publish(connect: Any) -> None:
    sub = connect()
    assert sub.call("SUBSCRIBE", "xp:c") == [b"subscribe", b"xp:c", 1]
    error = sub.call("PUBLISH", "xp:other", "m")
    assert isinstance(error, hiredis.ReplyError)
    assert str(error) == SUBSCRIBED_ONLY.format("publish")


def test_pipelined_subscribe_then_publish_keeps_reply_order(connect: Any) -> None:
    conn = connect(3)
    conn.sock.sendall(pack("SUBSCRIBE", "po:c") + pack("PUBLISH", "po:c", "m"))
    replies = conn.read_n(3)
    # Redis 7: the confirmation first (it is written before PUBLISH runs); then the
    # message and PUBLISH's count.
    assert replies[0] == [b"subscribe", b"po:c", 1]
    assert sorted(replies[1:], key=is_push) == [1, [b"message", b"po:c", b"m"]]


def test_pubsub_subcommand_errors_use_redis_words(connect: Any) -> None:
    conn = connect()
    for args, expected in [
        (("PUBSUB", "FOO"), "ERR unknown subcommand 'FOO'. Try PUBSUB HELP."),
        (("PUBSUB", "NUMPAT", "x"), "ERR wrong number of arguments for 'pubsub|numpat' command"),
        (
            ("PUBSUB", "CHANNELS", "a", "b"),
            "ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.",
        ),
    ]:
        error = conn.call(*args)
        assert isinstance(error, hiredis.ReplyError)
        assert str(error) == expected
    assert conn.call("PING") == b"PONG"  # the connection stays usable
