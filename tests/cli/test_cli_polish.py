"""The ``amber`` command as a newcomer meets it: version, -h, defaults, messages.

Each test runs the real command in a subprocess.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import amber
from amber.server.settings import ServeSettings

_PATH = Path(__file__).parent.parent / "server" / "server_support.py"
_SPEC = importlib.util.spec_from_file_location("amber_tests_server_fixtures_polish", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
_fixtures = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = _fixtures
_SPEC.loader.exec_module(_fixtures)

COMMANDS = [
    [],
    ["serve"],
    ["get"],
    ["put"],
    ["merge"],
    ["del"],
    ["scan"],
    ["watch"],
    ["info"],
    ["backup"],
    ["restore"],
    ["export"],
    ["import"],
    ["check"],
    ["chaos"],
    ["cluster"],
    ["cluster", "up"],
    ["cluster", "status"],
    ["cluster", "add"],
    ["cluster", "remove"],
    ["cluster", "transfer"],
]


def run(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    module: str = "amber.cli",
) -> subprocess.CompletedProcess[str]:
    # Narrow on purpose: a message must still be one line.
    full_env = {**os.environ, "COLUMNS": "50", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=full_env,
        timeout=60,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"not one line: {result.stderr!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag: str) -> None:
    result = run(flag)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"amber {amber.__version__}"


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "amber")
def test_dash_h_is_help_everywhere_without_rst_markup(command: list[str]) -> None:
    result = run(*command, "-h", env={"COLUMNS": "120"})
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "--help" in result.stdout
    for markup in ("``", ":class:", ":mod:", ":func:", ":meth:", "`"):
        assert markup not in result.stdout, f"{markup!r} in the help of {command}"


def test_serve_help_shows_the_real_defaults() -> None:
    text = run("serve", "--help", env={"COLUMNS": "200"}).stdout
    defaults = ServeSettings()
    for flag, value in [
        ("--data", defaults.data),
        ("--port", defaults.port),
        ("--http-port", defaults.http_port),
        ("--kvtext-port", defaults.kvtext_port),
        ("--bind", defaults.bind),
        ("--durability", defaults.durability),
        ("--max-clients", defaults.max_clients),
        ("--idle-timeout", defaults.idle_timeout),
        ("--log-level", defaults.log_level),
    ]:
        line = next(line for line in text.splitlines() if re.search(rf"│ {flag}\s", line))
        assert f"[default: {value}]" in line, line


def test_a_locked_folder_is_one_message_without_a_progress_bar(tmp_path: Path) -> None:
    folder = tmp_path / "db"
    holder = _hold_open(folder)
    try:
        result = run("backup", str(folder), str(tmp_path / "out.bak"))
    finally:
        holder.kill()
        holder.wait(10)
    line = _one_error_line(result)
    assert "open in another process" in line
    assert "━" not in result.stderr and "keys" not in result.stderr


def test_a_mistyped_path_is_an_error_that_creates_nothing(tmp_path: Path) -> None:
    """backup/export of a folder that is not there, import of a file that is not there."""
    missing = tmp_path / "no-such-db"
    for args in (
        ["backup", str(missing), str(tmp_path / "out.bak")],
        ["export", str(missing), "--out", str(tmp_path / "out.jsonl")],
    ):
        result = run(*args)
        line = _one_error_line(result)
        assert f"no data folder at {missing}" in line, line
        assert "━" not in result.stderr
        assert not missing.exists(), args
    assert sorted(p.name for p in tmp_path.iterdir()) == []

    target = tmp_path / "new-db"
    result = run("import", str(target), str(tmp_path / "no-such.jsonl"))
    line = _one_error_line(result)
    assert "could not read" in line and "no-such.jsonl" in line
    assert "━" not in result.stderr
    assert not target.exists()


def _hold_open(folder: Path) -> subprocess.Popen[str]:
    """A process that holds ``folder`` open (locked) until killed."""
    code = textwrap.dedent(
        f"""
        import sys, time, amber
        db = amber.open({str(folder)!r})
        print("open", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "open"
    proc.stdout.close()
    return proc


def test_demo_without_dir_when_data_is_in_use(tmp_path: Path) -> None:
    holder = _hold_open(tmp_path / "data")
    try:
        result = run(cwd=tmp_path, module="amber.demo")
    finally:
        holder.kill()
        holder.wait(10)
    line = _one_error_line(result)
    assert "in use by another process" in line and "python -m amber.demo DIR" in line
    ok = run(str(tmp_path / "elsewhere"), cwd=tmp_path, module="amber.demo")
    assert ok.returncode == 0 and "put + merge" in ok.stdout, ok.stderr


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = _fixtures.start_server(
        tmp_path_factory.mktemp("pw") / "data", "--requirepass", "s3cret"
    )
    yield server
    server.stop()


def test_get_against_a_password_says_how_to_pass_one(locked_server: Any) -> None:
    url = f"redis://{locked_server.host}:{locked_server.port}"
    env = {k: v for k, v in os.environ.items() if k != "AMBER_PASSWORD"}
    missing = _one_error_line(
        subprocess.run(
            [sys.executable, "-m", "amber.cli", "get", "t", "k", "--url", url],
            capture_output=True,
            text=True,
            check=False,
            env={**env, "COLUMNS": "50"},
            timeout=60,
        )
    )
    assert "requires a password" in missing
    assert "--password" in missing and "AMBER_PASSWORD" in missing
    wrong = _one_error_line(run("get", "t", "k", "--url", url, "--password", "nope"))
    assert "refused the password" in wrong
    in_url = _one_error_line(run("get", "t", "k", "--url", url.replace("//", "//:nope@")))
    assert "nope" not in in_url  # the password is not echoed
    found = run("get", "t", "k", "--url", url, env={"AMBER_PASSWORD": "s3cret"})
    assert found.returncode == 1 and "not found" in found.stderr  # got in: the key is absent
