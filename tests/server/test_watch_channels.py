"""Watch channels: ``SUBSCRIBE __amber_watch__:<spec>`` streams committed changes.

With redis-py's pubsub and a real ``redis-cli`` (which keeps listening only
after the SUBSCRIBE family, so ``AMBER.WATCH`` alone does not stream there).
"""

from __future__ import annotations

import json
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import hiredis
import pytest
from server_support import ServerFactory, ServerProcess

TIMEOUT_S = 10.0


def _messages(pubsub: Any, count: int) -> list[dict[str, Any]]:
    """The next ``count`` (p)messages, each with its payload parsed; bounded in time."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(out) < count:
        assert time.monotonic() < deadline, f"only {len(out)} of {count} messages: {out}"
        message = pubsub.get_message(timeout=0.5)
        if message is not None and message["type"] in ("message", "pmessage"):
            out.append({**message, "data": json.loads(message["data"])})
    return out


def test_subscribe_streams_each_change_with_its_diff(amber_server: ServerProcess) -> None:
    r = amber_server.redis()
    with r.pubsub() as pubsub:
        pubsub.subscribe("__amber_watch__:wc1:*")
        assert pubsub.get_message(timeout=5)["type"] == "subscribe"
        r.execute_command("JSON.SET", "wc1:ada", "$", '{"age": 36, "tags": ["x"]}')
        r.execute_command("JSON.MERGE", "wc1:ada", "$", '{"tags": null}')
        r.execute_command("JSON.SET", "other:ada", "$", "1")  # another table: not delivered
        r.delete("wc1:ada")
        got = _messages(pubsub, 3)
    assert {m["channel"] for m in got} == {b"__amber_watch__:wc1:*"}
    first, merged, deleted = (m["data"] for m in got)
    assert first == {
        "revision": first["revision"],
        "table": "wc1",
        "key": "ada",
        "type": "put",
        "value": {"age": 36, "tags": ["x"]},
        "diff": {"age": 36, "tags": ["x"]},
    }
    assert merged["value"] == {"age": 36} and merged["diff"] == {"tags": None}
    assert deleted["type"] == "delete" and deleted["value"] is None
    assert first["revision"] < merged["revision"] < deleted["revision"]


def test_psubscribe_names_each_key_and_resumes_from_a_revision(
    amber_server: ServerProcess,
) -> None:
    r = amber_server.redis()
    r.execute_command("JSON.SET", "wc2:ada", "$", '{"n": 1}')
    r.execute_command("JSON.SET", "wc2:bob", "$", '{"n": 2}')
    r.execute_command("JSON.SET", "wc2:alan", "$", '{"n": 3}')
    with r.pubsub() as live:
        live.psubscribe("__amber_watch__:wc2:a*")
        live.get_message(timeout=5)
        r.execute_command("JSON.SET", "wc2:anna", "$", '{"n": 4}')
        (now,) = _messages(live, 1)
    assert now["type"] == "pmessage"
    assert now["pattern"] == b"__amber_watch__:wc2:a*"
    assert now["channel"] == b"__amber_watch__:wc2:anna"
    # Resume: everything under the prefix from a revision (wc2:ada's), in commit order.
    with r.pubsub() as resumed:
        resumed.psubscribe(f"__amber_watch__@{now['data']['revision'] - 3}:wc2:a*")
        got = _messages(resumed, 3)
    assert [m["data"]["key"] for m in got] == ["ada", "alan", "anna"]
    assert [m["channel"] for m in got] == [
        b"__amber_watch__:wc2:ada",
        b"__amber_watch__:wc2:alan",
        b"__amber_watch__:wc2:anna",
    ]


def test_one_key_unsubscribe_and_publish_do_not_mix(amber_server: ServerProcess) -> None:
    r = amber_server.redis()
    with r.pubsub() as pubsub:
        pubsub.subscribe("__amber_watch__:wc3:k", "plain")
        pubsub.get_message(timeout=5)
        pubsub.get_message(timeout=5)
        assert r.publish("__amber_watch__:wc3:k", "forged") == 0
        r.execute_command("JSON.SET", "wc3:k2", "$", "2")  # another key
        r.execute_command("JSON.SET", "wc3:k", "$", "1")
        (got,) = _messages(pubsub, 1)
        assert got["data"]["key"] == "k" and got["data"]["value"] == 1
        pubsub.unsubscribe("__amber_watch__:wc3:k")
        deadline = time.monotonic() + TIMEOUT_S
        while (message := pubsub.get_message(timeout=0.5)) is None or message["type"] != (
            "unsubscribe"
        ):
            assert time.monotonic() < deadline
        assert message["data"] == 1  # still on "plain"
        r.execute_command("JSON.SET", "wc3:k", "$", "3")
        assert r.publish("plain", "hello") == 1
        (plain,) = _messages_raw(pubsub, 1)
    assert plain["channel"] == b"plain" and plain["data"] == b"hello"


def _messages_raw(pubsub: Any, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(out) < count:
        assert time.monotonic() < deadline
        message = pubsub.get_message(timeout=0.5)
        if message is not None and message["type"] == "message":
            out.append(message)
    return out


def test_unsubscribe_all_and_reset_stop_watch_channels(
    amber_server: ServerProcess, sockets: list[socket.socket]
) -> None:
    conn = hiredis_connection(amber_server, sockets)
    assert conn("SUBSCRIBE", "__amber_watch__:wc5:*", "plain", replies=2) == [
        [b"subscribe", b"__amber_watch__:wc5:*", 1],
        [b"subscribe", b"plain", 2],
    ]
    assert conn("PSUBSCRIBE", "__amber_watch__:wc5:a*") == [
        b"psubscribe",
        b"__amber_watch__:wc5:a*",
        3,
    ]
    assert conn("UNSUBSCRIBE", replies=2) == [
        [b"unsubscribe", b"__amber_watch__:wc5:*", 2],
        [b"unsubscribe", b"plain", 1],
    ]
    assert conn("RESET") == b"RESET"
    amber_server.redis().execute_command("JSON.SET", "wc5:a", "$", "1")
    assert conn("PING") == b"PONG"  # not subscribed, and no message came before the reply


@pytest.mark.parametrize(
    "channel",
    [
        "__amber_watch__:",
        "__amber_watch__:t:a*b",
        "__amber_watch__:t:a?",
        "__amber_watch__@x:t:*",
        "__amber_watch__@0:t:*",
        "__amber_watch__@5",
    ],
)
def test_a_malformed_watch_channel_is_refused_whole(
    amber_server: ServerProcess, channel: str, sockets: list[socket.socket]
) -> None:
    conn = hiredis_connection(amber_server, sockets)
    error = conn("SUBSCRIBE", "ok-channel", channel)
    assert isinstance(error, hiredis.ReplyError)
    assert "__amber_watch__" in str(error)
    assert conn("PING") == b"PONG"  # nothing was subscribed: not in subscribed mode


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Sockets a test opens, closed after it."""
    opened: list[socket.socket] = []
    yield opened
    for sock in opened:
        sock.close()


def hiredis_connection(server: ServerProcess, sockets: list[socket.socket]) -> Any:
    """A raw RESP2 connection: ``call(*args)`` sends one command, returns one reply."""
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT_S)
    sockets.append(sock)
    reader = hiredis.Reader()

    def call(*args: str, replies: int = 1) -> Any:
        """One reply, or a list of ``replies`` replies."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = arg.encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        sock.sendall(b"".join(parts))
        out = []
        for _ in range(replies):
            while (reply := reader.gets()) is False:
                reader.feed(sock.recv(65536))
            out.append(reply)
        return out if replies > 1 else out[0]

    return call


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_streams_a_watch_channel(amber_server: ServerProcess) -> None:
    proc = subprocess.Popen(
        ["redis-cli", "-p", str(amber_server.port), "SUBSCRIBE", "__amber_watch__:wc4:*"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    reading = threading.Thread(target=read, daemon=True)
    reading.start()
    try:

        def until(wanted: Any) -> list[str]:
            seen: list[str] = []
            deadline = time.monotonic() + TIMEOUT_S
            while not wanted(seen):
                try:
                    seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
                except queue.Empty:
                    raise AssertionError(f"redis-cli printed only {seen}") from None
            return seen

        until(lambda seen: seen[-3:] == ["subscribe", "__amber_watch__:wc4:*", "1"])
        r = amber_server.redis()
        r.execute_command("JSON.SET", "wc4:ada", "$", '{"age": 36}')
        r.execute_command("JSON.SET", "wc4:ada", "$.age", "37")
        payloads = [
            json.loads(line)
            for line in until(lambda seen: sum(s.startswith("{") for s in seen) == 2)
            if line.startswith("{")
        ]
    finally:
        proc.kill()
        proc.wait(10)
        reading.join(10)
        assert proc.stdout is not None
        proc.stdout.close()
    assert [p["value"] for p in payloads] == [{"age": 36}, {"age": 37}]
    assert payloads[1]["diff"] == {"age": 37}


def test_requirepass_applies(server_factory: ServerFactory, sockets: list[socket.socket]) -> None:
    server = server_factory("--requirepass", "s3cret")
    conn = hiredis_connection(server, sockets)
    error = conn("SUBSCRIBE", "__amber_watch__:t:*")
    assert isinstance(error, hiredis.ReplyError) and str(error).startswith("NOAUTH")
    r = server.redis(password="s3cret")
    with r.pubsub() as pubsub:
        pubsub.subscribe("__amber_watch__:t:*")
        pubsub.get_message(timeout=5)
        r.execute_command("JSON.SET", "t:k", "$", "1")
        (got,) = _messages(pubsub, 1)
    assert got["data"]["value"] == 1


def test_a_subscriber_that_does_not_read_is_told_it_lagged(
    server_factory: ServerFactory, sockets: list[socket.socket]
) -> None:
    """Its watch queue (10 events here) overflows; memory does not grow with the writes."""
    server = server_factory("--durability", "never", env={"AMBER_WATCH_QUEUE": "10"})
    sock = socket.socket()
    sockets.append(sock)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up soon
    sock.settimeout(TIMEOUT_S)
    sock.connect((server.host, server.port))
    sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$19\r\n__amber_watch__:t:*\r\n")
    reader = hiredis.Reader()
    while (confirmation := reader.gets()) is False:
        reader.feed(sock.recv(4096))
    assert confirmation == [b"subscribe", b"__amber_watch__:t:*", 1]
    r = server.redis()
    big = json.dumps("x" * 100_000)
    pipe = r.pipeline(transaction=False)
    for n in range(200):  # ~20 MB of messages: more than socket buffers hold
        pipe.execute_command("JSON.SET", f"t:k{n:03d}", "$", big)
    pipe.execute()
    # Now read: what was sent, then why it stopped, then the unsubscribe.
    received: list[int] = []
    while True:
        while (message := reader.gets()) is False:
            reader.feed(sock.recv(1 << 20))
        if message[0] == b"unsubscribe":
            break
        payload = json.loads(message[2])
        if "error" in payload:
            ended = payload
        else:
            received.append(payload["revision"])
    assert message == [b"unsubscribe", b"__amber_watch__:t:*", 0]
    assert ended["error"] == "lagged"
    assert len(received) < 200
    assert received == list(range(received[0], received[0] + len(received)))
    assert ended["resume"] == f"__amber_watch__@{received[-1] + 1}:t:*"
    # The resume channel delivers exactly the rest.
    with r.pubsub() as pubsub:
        pubsub.subscribe(ended["resume"])
        rest = _messages(pubsub, 200 - len(received))
    keys = [m["data"]["key"] for m in rest]
    assert keys[0] == f"k{len(received):03d}" and keys[-1] == "k199"
