"""The password stays out of ``ps``; an open, password-less listener is warned about.

Issue #12, item 8: ``--requirepass s3cret`` shows in every ``ps`` listing.
``--requirepass-file`` reads it from a file (its first line) instead; a
server that listens beyond loopback with no password says so at start.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis
from attack_support import SandboxedFactory, assert_responsive

from amber.server.settings import ServeSettings, exposed_without_password


def test_the_password_comes_from_a_file_and_not_the_command_line(
    server_factory: SandboxedFactory, sandbox: Path
) -> None:
    secret = sandbox / "home" / "amber.pass"
    secret.write_text("correct horse battery\n")
    server = server_factory("--requirepass-file", str(secret))
    cmdline = Path(f"/proc/{server.proc.pid}/cmdline").read_bytes()
    assert b"correct horse" not in cmdline
    with pytest.raises(redis.AuthenticationError):
        server.redis().set("t:k", "v")
    assert server.redis(password="correct horse battery").set("t:k", "v") is True
    assert_responsive(server, password="correct horse battery")


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_an_empty_password_file_refuses_to_start(tmp_path: Path, content: str) -> None:
    secret = tmp_path / "pass"
    secret.write_text(content)
    done = subprocess.run(
        [sys.executable, "-m", "amber.cli", "serve", "--data", str(tmp_path / "d"),
         "--requirepass-file", str(secret), "--port", "0", "--http-port", "-1",
         "--kvtext-port", "-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "is empty" in " ".join(done.stderr.split())
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize(
    ("bind", "password", "exposed"),
    [
        ("0.0.0.0", "", True),
        ("", "", True),
        ("192.168.1.7", "", True),
        ("db.example", "", True),
        ("0.0.0.0", "pw", False),
        ("127.0.0.1", "", False),
        ("127.0.0.2", "", False),
        ("::1", "", False),
        ("localhost", "", False),
    ],
)
def test_which_listeners_are_exposed(bind: str, password: str, exposed: bool) -> None:
    settings = ServeSettings(bind=bind, requirepass=password)
    assert exposed_without_password(settings) is exposed


def test_a_loopback_server_is_not_warned_about(server_factory: SandboxedFactory) -> None:
    # (Tests bind loopback only; which binds warn is the parametrized test above.)
    server = server_factory("--http-port", "-1", "--kvtext-port", "-1")
    assert "with no password" not in server.stderr()
