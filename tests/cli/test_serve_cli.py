"""``amber serve`` start-up as a user meets it, and what ``make run`` installs."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def amber(
    *args: str, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "60"}  # narrow: messages must not wrap mid-sentence
    return subprocess.run(
        [sys.executable, "-m", "amber.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.parametrize("flag", ["--port", "--http-port", "--kvtext-port"])
def test_a_taken_port_is_named_before_the_database_opens(tmp_path: Path, flag: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": "0", "--http-port": "0", "--kvtext-port": "0", flag: str(port)}
        started = time.monotonic()
        result = amber("serve", "--data", str(tmp_path / "data"), *sum(ports.items(), ()))
    assert result.returncode == 1, result
    assert "ready" not in result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    assert f"port {port}" in message and "already in use" in message
    assert f"with {flag} " in message
    assert "Traceback" not in result.stderr
    # Checked first: the data folder was never opened (nor created) and no time lost.
    assert not (tmp_path / "data").exists()
    assert time.monotonic() - started < 20


def _dry_run(target: str, tmp_path: Path, *variables: str) -> str:
    """What ``make TARGET`` would run in a fresh clone (``make -n``: nothing runs)."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = subprocess.run(
        ["make", "-n", target, *variables],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_what_serving_needs_only(tmp_path: Path) -> None:
    run = _dry_run("run", tmp_path)
    assert "pip install -q -e .\n" in run
    assert "[test]" not in run
    assert "amber serve --data ./data" in run
    # The flag a taken port's message names reaches amber serve through make run.
    moved = _dry_run("run", tmp_path, "ARGS=--port 7479 --http-port 7480")
    assert "amber serve --data ./data --port 7479 --http-port 7480\n" in moved
    test = _dry_run("unit", tmp_path)
    assert "pip install -q -e '.[test]'" in test
