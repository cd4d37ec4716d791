"""Real ``amber serve`` processes for the server (and adversarial) tests.

``start_server(data, *flags)`` runs ``python -m amber.cli serve`` with every
port 0 (free ports) and reads the ``listening <frontend> <host>:<port>``
lines it prints up to ``ready``; the returned :class:`ServerProcess` knows
its ports (``server.ports["resp"]``, ``["http"]``, ``["kvtext"]``). Fixtures:

- ``amber_server``: one server per test module (fast; tests share its data);
- ``server_factory``: start servers of your own (flags, restarts, signals);
  every one still running is killed after the test.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

START_TIMEOUT_S = 30.0


@dataclass
class ServerProcess:
    """A running ``amber serve`` and the ports it printed."""

    proc: subprocess.Popen[str]
    data: Path
    ports: dict[str, int]
    host: str = "127.0.0.1"
    stderr_path: Path | None = None
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The RESP port."""
        return self.ports["resp"]

    def redis(self, **kwargs: Any) -> Any:
        import redis

        kwargs.setdefault("socket_timeout", 20)
        return redis.Redis(host=self.host, port=self.port, **kwargs)

    def async_redis(self, **kwargs: Any) -> Any:
        import redis.asyncio

        kwargs.setdefault("socket_timeout", 20)
        return redis.asyncio.Redis(host=self.host, port=self.port, **kwargs)

    def stderr(self) -> str:
        if self.stderr_path is None or not self.stderr_path.exists():
            return ""
        return self.stderr_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"server did not stop on {sig}; stderr:\n{self.stderr()}"
            ) from None
        finally:
            self._close_pipe()

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc.poll() is None:
            return
        if self.reader is not None:
            self.reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_server(
    data: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    ports: tuple[str, ...] = ("--port", "0", "--http-port", "0", "--kvtext-port", "0"),
    cwd: Path | None = None,
) -> ServerProcess:
    """Start ``amber serve`` on ``data`` and wait until it prints ``ready``."""
    data.parent.mkdir(parents=True, exist_ok=True)
    stderr_path = data.parent / f"{data.name}.stderr.{time.monotonic_ns()}.log"
    command = [sys.executable, "-m", "amber.cli", "serve", "--data", str(data), *ports, *flags]
    full_env = {**os.environ, **(env or {})}
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=full_env, cwd=cwd
        )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    printed: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            printed.append(line.rstrip("\n"))
            lines.put(printed[-1])
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    server = ServerProcess(proc, data, {}, stderr_path=stderr_path, lines=printed, reader=reader)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"server did not start; stderr:\n{server.stderr()}") from None
        if line is None:
            proc.wait(10)
            server._close_pipe()
            raise AssertionError(
                f"server exited with {proc.returncode} before ready; stderr:\n{server.stderr()}"
            )
        if line.startswith("listening "):
            _, frontend, address = line.split()
            host, _, port = address.rpartition(":")
            server.host = host
            server.ports[frontend] = int(port)
        elif line == "ready":
            return server


class ServerFactory:
    """Starts servers for one test and kills the ones left running."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[ServerProcess] = []

    def __call__(self, *flags: str, data: Path | None = None, **kwargs: Any) -> ServerProcess:
        server = start_server(data or self.root / "data", *flags, **kwargs)
        self.started.append(server)
        return server

    def cleanup(self) -> None:
        for server in self.started:
            if server.proc.poll() is None:
                server.kill()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    factory = ServerFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(scope="module")
def amber_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("amber-serve")
    factory = ServerFactory(root)
    try:
        yield factory()
    finally:
        for server in factory.started:
            if server.proc.poll() is None:
                server.stop()
        factory.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """A real redis-server 7 on loopback, no persistence, for side-by-side checks.

    Redis behaviour is settled by running it, not from memory; stopped by its pid.
    """
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed (.ci/run installs it)"
    port = _free_port()
    folder: Path = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=10)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)
    assert client.info("server")["redis_version"].startswith("7.")
    try:
        yield client
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)


def replies(client: redis.Redis, commands: list[tuple[str, ...]]) -> list[Any]:
    """Each command's reply, or ``"error: <text>"``; one command at a time.

    Two servers' answers to the same commands then compare with ``==``.
    """
    out: list[Any] = []
    for command in commands:
        try:
            out.append(client.execute_command(*command))
        except redis.ResponseError as exc:
            out.append(f"error: {exc}")
    return out
