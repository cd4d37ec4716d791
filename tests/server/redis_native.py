"""A real redis-server beside Amber, for side-by-side tests of Redis' own commands.

``native_redis`` (module scope) runs ``redis-server`` on a free loopback
port without persistence and yields a redis-py client; ``replies(client,
commands)`` runs commands one at a time and returns each reply, or the
error's text, so two servers' answers compare with ``==``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def native_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """redis-server 7 on loopback, no persistence; stopped by its own pid."""
    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is needed (.ci/run installs it)"
    port = _free_port()
    folder: Path = tmp_path_factory.mktemp("redis-native")
    proc = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=10, decode_responses=True)
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
    """Each command's reply, or ``"error: <text>"``; one command at a time."""
    out: list[Any] = []
    for command in commands:
        try:
            out.append(client.execute_command(*command))
        except redis.ResponseError as exc:
            out.append(f"error: {exc}")
    return out
