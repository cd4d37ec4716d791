"""``amber backup redis://…``: a running server backs itself up while it takes writes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import amber


def test_online_backup_of_a_running_server(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    client = server.redis()
    for i in range(200):
        client.execute_command("JSON.SET", f"docs:d{i:03d}", "$", f'{{"i": {i}}}')
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:  # writes go on during the backup
        conn = server.redis()
        i = 0
        while not stop.is_set() and i < 5000:
            conn.set(f"live:k{i}", str(i))
            written.append(i)
            i += 1
        conn.close()

    thread = threading.Thread(target=writer)
    thread.start()
    dest = server.data / "backups" / "online.amber"  # the default backup folder
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "amber.cli",
                "backup",
                f"redis://127.0.0.1:{server.port}",
                "online.amber",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        stop.set()
        thread.join(timeout=60)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())  # rich wraps long lines
    assert "(on the server)" in out
    revision = int(out.split("backed up revision ")[1].split(":")[0])

    target = tmp_path / "restored"
    restored = subprocess.run(
        [sys.executable, "-m", "amber.cli", "restore", str(dest), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert restored.returncode == 0, restored.stderr
    with amber.open(target, jobs=False) as db:
        assert db.revision == revision  # consistent at exactly one revision
        assert db.table("docs")["d042"] == {"i": 42}
        live = db.table("live")
        # a prefix of the live writes: every write up to the cut, none after a gap
        present = sorted(int(k[1:]) for k in live)
        assert present == list(range(len(present)))
    client.close()
    server.stop()


def test_online_backup_errors_are_clean(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "amber.cli",
            "backup",
            f"redis://127.0.0.1:{server.port}",
            str(tmp_path / "outside.amber"),  # a path outside the backup folder
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "error:" in done.stderr
    assert "relative to the server's backup folder" in " ".join(done.stderr.split())
    assert not (tmp_path / "outside.amber").exists()
    assert server.redis().ping()  # the server stays up
    server.stop()
