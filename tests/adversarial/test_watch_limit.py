"""One connection holds at most ``MAX_WATCHES`` watches (AMBER.WATCH and watch channels).

Found auditing issue #12 (its rule: everything is bounded per connection):
each watch is a database watcher with its queue and a task, ~8 KB, and a
connection could open any number: ``SUBSCRIBE`` of 50,000 watch channels
grew the server by 400 MB. Past the bound the command is refused whole.
"""

from __future__ import annotations

import socket

from attack_support import (
    PingWatch,
    SandboxedFactory,
    assert_responsive,
    pack,
    read_until,
    rss_bytes,
)

from amber.server.commands.watch_channels import MAX_WATCHES

MIB = 1024 * 1024
TOO_MANY = b"-ERR too many watches on this connection"


def channels(start: int, count: int) -> list[bytes]:
    return [b"__amber_watch__:t:k%d" % i for i in range(start, start + count)]


def test_watches_per_connection_are_bounded(server_factory: SandboxedFactory) -> None:
    server = server_factory("--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"))
    client = server.redis()
    with socket.create_connection((server.host, server.port)) as sock:
        sock.sendall(pack(b"SUBSCRIBE", b"warm-up"))
        read_until(sock, b"warm-up")
        before = rss_bytes(server.proc.pid)
        with PingWatch(server) as watch:
            sock.sendall(pack(b"SUBSCRIBE", *channels(0, MAX_WATCHES)))
            read_until(sock, b":%d\r\n" % (MAX_WATCHES + 1))  # every one confirmed
            refused = 0
            for batch in range(1, 21):  # 20 x 1000 more, each refused whole
                sock.sendall(pack(b"SUBSCRIBE", *channels(batch * 1000, 1000)))
                assert read_until(sock, b"\r\n").startswith(TOO_MANY)
                refused += 1
            sock.sendall(pack(b"AMBER.WATCH", b"t:*"))
            assert read_until(sock, b"\r\n").startswith(TOO_MANY)
        watch.assert_ok()
        grown = rss_bytes(server.proc.pid) - before
        assert refused == 20
        assert grown < 60 * MIB, f"RSS grew {grown / MIB:.0f} MiB"
        # The watches held still work; leaving one makes room for another.
        client.set("t:k7", "v")
        assert b"t:k7" in read_until(sock, b"t:k7")
        sock.sendall(pack(b"UNSUBSCRIBE", b"__amber_watch__:t:k0"))
        read_until(sock, b"unsubscribe")
        sock.sendall(pack(b"AMBER.WATCH", b"t:*"))
        read_until(sock, b"amber.watch")
    client.close()
    assert_responsive(server)
