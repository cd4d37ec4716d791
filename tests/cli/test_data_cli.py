"""``amber get/put/merge/del/scan/watch/info`` against a real ``amber serve``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

import server_support as _fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    proc = _fixtures.start_server(tmp_path_factory.mktemp("cli") / "data")
    yield proc
    proc.stop()


def amber_cli(server: Any, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AMBER_URL": f"redis://{server.host}:{server.port}", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "amber.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_put_get_merge_del(server: Any) -> None:
    put = amber_cli(server, "put", "users", "1", '{"name": "ada", "tags": ["x"], "n": 1.5}')
    assert put.returncode == 0, put.stderr
    revision = json.loads(put.stdout)["revision"]
    assert revision >= 1
    got = amber_cli(server, "get", "users", "1")
    assert json.loads(got.stdout) == {"name": "ada", "tags": ["x"], "n": 1.5}
    merged = amber_cli(server, "merge", "users", "1", '{"tags": null, "age": 36}')
    assert json.loads(merged.stdout) == {"name": "ada", "n": 1.5, "age": 36}
    again = amber_cli(server, "put", "users", "1", "2", "--if-absent")
    assert again.returncode == 1 and "condition failed" in again.stderr
    assert amber_cli(server, "del", "users", "1").returncode == 0
    missing = amber_cli(server, "get", "users", "1")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert amber_cli(server, "del", "users", "1").returncode == 1
    bad = amber_cli(server, "put", "users", "1", "{nope")
    assert bad.returncode == 1 and "not valid JSON" in bad.stderr


def test_scan_watch_info(server: Any) -> None:
    start = json.loads(amber_cli(server, "put", "s", "a1", "1").stdout)["revision"]
    amber_cli(server, "put", "s", "a2", '{"x": 2}', "--ttl", "100")
    amber_cli(server, "put", "s", "b1", "3")
    lines = amber_cli(server, "scan", "s", "--prefix", "a").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [
        {"key": "a1", "value": 1},
        {"key": "a2", "value": {"x": 2}},
    ]
    assert len(amber_cli(server, "scan", "s", "--limit", "1").stdout.splitlines()) == 1
    watched = amber_cli(server, "watch", "s", "--prefix", "b", "--from", str(start), "--count", "1")
    assert watched.returncode == 0, watched.stderr
    event = json.loads(watched.stdout)
    assert (event["type"], event["key"], event["value"]) == ("put", "b1", 3)
    info = json.loads(amber_cli(server, "info").stdout)
    assert info["amber_revision"] >= start + 2


def test_help_everywhere_and_unreachable(server: Any) -> None:
    for command in ("get", "put", "merge", "del", "scan", "watch", "info"):
        result = amber_cli(server, command, "--help")
        assert result.returncode == 0 and "--url" in result.stdout, command
    down = amber_cli(server, "get", "t", "k", "--url", "redis://127.0.0.1:1")
    assert down.returncode == 1 and "cannot reach" in down.stderr
