"""The adversarial checks themselves: a quiet server passes them, a stopped one fails them."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from attack_support import PingWatch, SandboxedFactory, assert_responsive, files_outside, rss_bytes


def test_a_quiet_server_passes_and_a_stopped_one_fails(
    server_factory: SandboxedFactory, sandbox: Path
) -> None:
    server = server_factory()
    with PingWatch(server) as watch:
        server.redis().set("t:k", "v")
    watch.assert_ok()
    assert_responsive(server)
    assert 10 * 2**20 < rss_bytes(server.proc.pid) < 2**30
    assert files_outside(sandbox, server.data) == []
    (sandbox / "home" / "planted").write_text("x")
    assert files_outside(sandbox, server.data) == [sandbox / "home" / "planted"]
    server.proc.send_signal(signal.SIGSTOP)  # a frozen server must fail the check
    try:
        with pytest.raises(Exception):
            assert_responsive(server, limit=0.5)
    finally:
        server.proc.send_signal(signal.SIGCONT)
