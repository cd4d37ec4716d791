"""``maxclients`` bounds the connections of every front end together, within the fd limit.

Found auditing issue #12: ``maxclients`` counted RESP sessions only. KV text
connections (accepted even while a password locks that protocol) and HTTP
streams had no bound, so idle connections could take every file descriptor
of the process; the next snapshot then failed (``Too many open files``) and
the server stopped taking writes until a restart. Now one count covers RESP,
HTTP and kvtext, and at start the open-file limit is raised (as Redis does)
to ``maxclients`` plus ``RESERVED_FDS``, or ``maxclients`` lowered to fit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from attack_support import PingWatch, SandboxedFactory, ServerProcess, assert_responsive

from amber.server.server import RESERVED_FDS, client_budget

LIMIT = 20


def soft_fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit")


@contextmanager
def idle_kvtext(server: ServerProcess, count: int) -> Iterator[list[socket.socket]]:
    """``count`` KV text connections that send nothing, closed on exit."""
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            sock = socket.create_connection((server.host, server.ports["kvtext"]), timeout=5)
            stack.callback(sock.close)
            opened.append(sock)
        time.sleep(0.3)  # the server has accepted them all
        yield opened


def refused(sock: socket.socket) -> bytes:
    """What the server says before it closes ``sock`` (b"" if it stays open 2 s)."""
    sock.settimeout(2)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except TimeoutError:
        return b""
    return got


def test_one_limit_over_every_front_end(server_factory: SandboxedFactory) -> None:
    server = server_factory("--max-clients", str(LIMIT))
    http = (server.host, server.ports["http"])
    with PingWatch(server) as watch, idle_kvtext(server, LIMIT - 1):  # + the watch: full
        with socket.create_connection((server.host, server.port)) as sock:
            assert refused(sock) == b"-ERR max number of clients reached\r\n"
        with socket.create_connection((server.host, server.ports["kvtext"])) as sock:
            assert refused(sock) == b"ERROR max number of clients reached\r\n"
        with socket.create_connection(http) as sock:
            assert refused(sock).startswith(b"HTTP/1.1 503")
    watch.assert_ok()
    time.sleep(0.3)  # the server sees the closes
    assert server.redis().set("t:k", "v") is True
    assert_responsive(server)


def test_idle_connections_cannot_take_the_descriptors_the_data_needs(
    server_factory: SandboxedFactory,
) -> None:
    prlimit = shutil.which("prlimit")
    if prlimit is None:
        pytest.skip("prlimit (util-linux) is needed")
    server = server_factory("--max-clients", "100")
    assert soft_fd_limit(server.proc.pid) >= 100 + RESERVED_FDS
    # A host that grants no more than that (pinned after start).
    fds = 100 + RESERVED_FDS
    subprocess.run([prlimit, f"--pid={server.proc.pid}", f"--nofile={fds}:{fds}"], check=True)
    client = server.redis()
    client.set("t:before", "1")
    with PingWatch(server) as watch, ExitStack() as stack:
        for _ in range(fds + 50):
            try:
                sock = socket.create_connection((server.host, server.ports["kvtext"]), timeout=5)
            except OSError:
                break
            stack.callback(sock.close)
        for i in range(20):  # files the server opens while the connections stay
            assert client.set(f"t:k{i}", "x" * 100_000) is True
            assert client.save() is True
    watch.assert_ok()
    assert client.set("t:after", "1") is True
    server.stop()
    again = server_factory("--max-clients", "100", data=server.data)
    assert again.redis().mget("t:before", "t:k19", "t:after")[2] == b"1"


@pytest.mark.parametrize(
    ("max_clients", "soft", "hard", "target", "clients"),
    [
        (10_000, 1024, 1 << 20, 10_000 + RESERVED_FDS, 10_000),  # raised
        (10_000, 1024, 4096, 4096, 4096 - RESERVED_FDS),  # lowered to fit the hard limit
        (10_000, 65536, 65536, 65536, 10_000),  # already enough: left alone
        (0, 1024, 8192, 8192, 8192 - RESERVED_FDS),  # "no limit": what the host allows
        (100, 200, 200, 200, 1),
    ],
)
def test_the_client_budget(
    max_clients: int, soft: int, hard: int, target: int, clients: int
) -> None:
    assert client_budget(max_clients, soft, hard) == (target, clients)


def hard_fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[4])
    raise AssertionError("no open-file limit")


def test_config_set_maxclients_keeps_the_bound(
    server_factory: SandboxedFactory, redis_server: Any
) -> None:
    """CONFIG SET could turn the bound off (0) or past the descriptors the process
    may open; both are refused, in redis-server 7.0.15's words, and nothing changes."""
    server = server_factory("--max-clients", str(LIMIT))
    amber = server.redis()
    for value in ("0", "-1", "x", "4294967296"):
        with pytest.raises(redis.ResponseError) as ours:
            amber.config_set("maxclients", value)
        with pytest.raises(redis.ResponseError) as theirs:
            redis_server.config_set("maxclients", value)
        assert str(ours.value) == str(theirs.value), value
    fits = hard_fd_limit(server.proc.pid) - RESERVED_FDS
    with pytest.raises(redis.ResponseError) as too_many:
        amber.config_set("maxclients", str(fits + 1))
    assert str(too_many.value) == (
        "CONFIG SET failed (possibly related to argument 'maxclients') - The operating "
        f"system is not able to handle the specified number of clients, try with {fits}"
    )
    assert amber.config_get("maxclients") == {"maxclients": str(LIMIT)}
    assert amber.config_set("maxclients", str(min(fits, 500))) is True
    assert amber.config_get("maxclients") == {"maxclients": str(min(fits, 500))}
    assert soft_fd_limit(server.proc.pid) >= min(fits, 500) + RESERVED_FDS
    amber.close()
