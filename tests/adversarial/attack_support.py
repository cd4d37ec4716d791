"""What every attack in ``tests/adversarial`` checks, against a real ``amber serve``.

Imported by name (``from attack_support import …``); the fixtures are
re-exported by this folder's ``conftest.py``.

An attack runs against a real server process (``attacked`` / ``server_factory``)
and, where it applies, a real 3-node cluster. Around it the tests assert what
the issue asks of a database under attack:

- **responsive**: a :class:`PingWatch` pings from another connection every
  100 ms during the attack; no PING may take 1 s or more (``assert_ok``), and
  one more PING after the attack must answer within 1 s;
- **bounded memory**: :func:`rss_bytes` reads the server's resident set from
  ``/proc`` before and after;
- **nothing acknowledged lost**: tests write, attack, then read back (after a
  restart where it matters);
- **nothing written outside the data folder**: servers run with their working
  directory, ``HOME`` and ``TMPDIR`` inside the test's own ``sandbox``, and
  :func:`files_outside` lists every file in it that is not under the data
  folder.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from server_support import ServerFactory, ServerProcess, redis_server, start_server

__all__ = [
    "PING_LIMIT_S",
    "PingWatch",
    "SandboxedFactory",
    "ServerFactory",
    "ServerProcess",
    "assert_responsive",
    "files_outside",
    "pack",
    "read_until",
    "redis_server",
    "rss_bytes",
    "sandbox",
    "server_factory",
    "start_server",
]

#: The issue's bound: a PING from another connection answers within this, during and after.
PING_LIMIT_S = 1.0


def pack(*args: bytes) -> bytes:
    """One RESP command as a client sends it (for raw sockets, which can misbehave)."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def read_until(
    sock: socket.socket, marker: bytes, seconds: float = 30.0, *, at_end: bool = False
) -> bytes:
    """What arrives until ``marker`` is in it (``at_end``: ends it), at most ``seconds``."""
    sock.settimeout(seconds)
    deadline = time.monotonic() + seconds
    got = bytearray()
    while not (got.endswith(marker) if at_end else marker in got):
        assert time.monotonic() < deadline, bytes(got[-200:])
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {bytes(got[-200:])!r}"
        got += chunk
    return bytes(got)


def rss_bytes(pid: int) -> int:
    """The process's resident set size (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def _ping_client(server: ServerProcess, password: str | None) -> redis.Redis:
    """A client that reports a slow or failed PING once, never retrying it away."""
    return redis.Redis(
        host=server.host,
        port=server.port,
        password=password,
        socket_timeout=10,
        socket_connect_timeout=10,
        retry=Retry(NoBackoff(), 0),
    )


def assert_responsive(
    server: ServerProcess, *, password: str | None = None, limit: float = PING_LIMIT_S
) -> float:
    """One PING on a fresh connection answers within ``limit`` seconds; returns its time."""
    client = _ping_client(server, password)
    try:
        client.ping()  # connect (and AUTH) outside the measured time
        started = time.monotonic()
        assert client.ping() is True
        took = time.monotonic() - started
    finally:
        client.close()
    assert took < limit, f"PING took {took:.2f} s (limit {limit} s)"
    assert server.proc.poll() is None, f"server died; stderr:\n{server.stderr()}"
    return took


class PingWatch:
    """Pings the server every ``interval`` from its own connection while an attack runs.

    ``with PingWatch(server) as watch: attack()`` then ``watch.assert_ok()``:
    every PING answered, none took ``PING_LIMIT_S`` or more.
    """

    def __init__(
        self, server: ServerProcess, *, password: str | None = None, interval: float = 0.1
    ) -> None:
        self.server = server
        self.password = password
        self.interval = interval
        self.times: list[float] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        #: Set once connected: the attack starts only then, so that a stall it
        #: causes at once is timed, not hidden in the untimed connecting PING.
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = _ping_client(self.server, self.password)
        try:
            try:
                client.ping()
            except redis.RedisError as exc:
                self.errors.append(repr(exc))
                return
            finally:
                self._ready.set()
            while True:  # at least one timed PING, even for an attack over at once
                started = time.monotonic()
                try:
                    client.ping()
                except redis.RedisError as exc:
                    self.errors.append(repr(exc))
                    return
                self.times.append(time.monotonic() - started)
                if self._stop.wait(self.interval):
                    break
        finally:
            client.close()

    def __enter__(self) -> PingWatch:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def worst(self) -> float:
        return max(self.times, default=0.0)

    def assert_ok(self, limit: float = PING_LIMIT_S) -> None:
        assert not self.errors, f"PING failed during the attack: {self.errors}"
        assert self.times, "no PING completed during the attack"
        assert self.worst < limit, (
            f"slowest PING during the attack took {self.worst:.2f} s (limit {limit} s; "
            f"{len(self.times)} pings)"
        )


def files_outside(sandbox: Path, data: Path) -> list[Path]:
    """Every file under ``sandbox`` that is not inside ``data`` nor a server's stderr log."""
    found = []
    for path in sandbox.rglob("*"):
        if path.is_dir() or path.is_relative_to(data):
            continue
        if path.name.startswith(f"{data.name}.stderr."):
            continue
        found.append(path)
    return found


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder that holds the server's data, cwd, HOME and TMPDIR."""
    root = tmp_path / "sandbox"
    root.mkdir()
    return root


class SandboxedFactory(ServerFactory):
    """``ServerFactory`` whose servers run with cwd, HOME and TMPDIR inside the sandbox."""

    def __init__(self, sandbox: Path) -> None:
        super().__init__(sandbox)
        self.sandbox = sandbox
        (sandbox / "home").mkdir(parents=True, exist_ok=True)
        (sandbox / "tmp").mkdir(exist_ok=True)

    def __call__(self, *flags: str, data: Path | None = None, **kwargs: Any) -> ServerProcess:
        env = {
            "HOME": str(self.sandbox / "home"),
            "TMPDIR": str(self.sandbox / "tmp"),
            **kwargs.pop("env", {}),
        }
        kwargs.setdefault("cwd", self.sandbox)
        return super().__call__(*flags, data=data or self.sandbox / "data", env=env, **kwargs)


@pytest.fixture
def server_factory(sandbox: Path) -> Iterator[SandboxedFactory]:
    """Servers in ``sandbox``; its ``home`` and ``tmp`` folders exist once this is set up."""
    factory = SandboxedFactory(sandbox)
    try:
        yield factory
    finally:
        factory.cleanup()
