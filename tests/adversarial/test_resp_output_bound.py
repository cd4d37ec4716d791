"""A client that never reads its replies cannot make the server buffer gigabytes.

Issue #12, item 3: 1,024 pipelined GETs of a 1 MiB value from a client that
reads nothing grew the server to 2.1 GB and stalled PING for 9 s. Replies
now go to the socket as they are made, and the socket's backpressure stops
the pipeline; pub/sub messages to a client that does not read are cut off
past the hard limit (Redis' ``client-output-buffer-limit``) and counted.
"""

from __future__ import annotations

import socket
import time

import pytest
from attack_support import PingWatch, SandboxedFactory, assert_responsive, rss_bytes

MIB = 1024 * 1024


def _command(*parts: bytes) -> bytes:
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)


@pytest.mark.parametrize(("value_mib", "count"), [(1, 1024), (4, 512)])
def test_pipelined_big_reads_that_are_never_read(
    server_factory: SandboxedFactory, value_mib: int, count: int
) -> None:
    server = server_factory()
    server.redis().set("t:big", b"x" * (value_mib * MIB))
    before = rss_bytes(server.proc.pid)
    attacker = socket.create_connection((server.host, server.port))
    attacker.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        with PingWatch(server) as watch:
            attacker.sendall(_command(b"GET", b"t:big") * count)
            time.sleep(3)
            grown = rss_bytes(server.proc.pid) - before
        watch.assert_ok()
        # Unbounded, this was count x value (1-2 GB); bounded, a few replies.
        assert grown < 8 * value_mib * MIB + 64 * MIB, f"RSS grew {grown / MIB:.0f} MiB"
        # The attacker is merely slow, not cut off: its replies arrive in order.
        attacker.settimeout(20)
        head = attacker.recv(64)
        assert head.startswith(b"$%d\r\nxxx" % (value_mib * MIB))
    finally:
        attacker.close()
    assert_responsive(server)


def test_a_subscriber_that_never_reads_is_cut_off_and_counted(
    server_factory: SandboxedFactory,
) -> None:
    server = server_factory()
    subscriber = socket.create_connection((server.host, server.port))
    subscriber.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        subscriber.sendall(_command(b"SUBSCRIBE", b"news"))
        time.sleep(0.3)
        publisher = server.redis()
        before = rss_bytes(server.proc.pid)
        message = b"m" * MIB
        with PingWatch(server) as watch:
            for _ in range(120):  # 120 MiB against a 64 MiB hard limit
                publisher.publish("news", message)
                if publisher.pubsub_numsub("news")[0][1] == 0:
                    break
        watch.assert_ok()
        assert publisher.pubsub_numsub("news")[0][1] == 0  # cut off
        stats = publisher.info("stats")
        assert stats["client_output_buffer_limit_disconnections"] >= 1
        assert rss_bytes(server.proc.pid) - before < 160 * MIB
    finally:
        subscriber.close()
    assert_responsive(server)
