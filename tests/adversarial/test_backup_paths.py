"""``AMBER.BACKUP`` never lets a client choose where on the host a file is written.

Issue #12, item 6: ``AMBER.BACKUP /any/path`` replaced an arbitrary file, and
a value holding ``"\\n* * * * * root …\\n"`` landed on a line of its own — the
classic Redis cron / ``authorized_keys`` attack. Backups now go inside the
server's backup folder (default DATA/backups) only.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from attack_support import SandboxedFactory, assert_responsive, files_outside

CRON_LINE = "\n* * * * * root touch /tmp/pwned\n"


def test_a_client_cannot_write_outside_the_backup_folder(
    server_factory: SandboxedFactory, sandbox: Path
) -> None:
    server = server_factory()
    client = server.redis()
    client.set("t:payload", CRON_LINE)
    victim = sandbox / "home" / "authorized_keys"
    victim.write_text("ssh-ed25519 AAAA original\n")
    outside = sandbox / "tmp" / "escape"
    outside.mkdir()
    (server.data / "backups").mkdir(exist_ok=True)
    os.symlink(outside, server.data / "backups" / "link")
    os.symlink(victim, server.data / "backups" / "keys")
    before = sorted(files_outside(sandbox, server.data))
    attempts = [
        str(victim),  # absolute path
        str(sandbox / "tmp" / "cron"),
        "../../home/authorized_keys",  # climbing out
        "a/../../x",
        "link/cron",  # a symlinked folder out
        "keys",  # a symlink to the victim file
        "file:///etc/cron.d/x",
        "s3://bucket/key",  # no S3 backups configured
    ]
    for dest in attempts:
        with pytest.raises(redis.ResponseError) as refused:
            client.execute_command("AMBER.BACKUP", dest)
        assert "internal error" not in str(refused.value)
    assert victim.read_text() == "ssh-ed25519 AAAA original\n"
    assert not list(outside.iterdir())
    assert sorted(files_outside(sandbox, server.data)) == before
    assert_responsive(server)


def test_backups_go_into_the_folder_and_replace_only_when_asked(
    server_factory: SandboxedFactory, sandbox: Path
) -> None:
    server = server_factory()
    client = server.redis()
    client.set("t:k", "v")
    reply = client.execute_command("AMBER.BACKUP", "nightly.amber")
    info = dict(zip(reply[::2], reply[1::2], strict=True)) if isinstance(reply, list) else reply
    location = info[b"location"].decode()
    assert Path(location) == (server.data / "backups" / "nightly.amber").resolve()
    first = Path(location).read_bytes()
    client.set("t:k2", "v2")
    with pytest.raises(redis.ResponseError, match="exists; add REPLACE"):
        client.execute_command("AMBER.BACKUP", "nightly.amber")
    assert Path(location).read_bytes() == first
    client.execute_command("AMBER.BACKUP", "nightly.amber", "REPLACE")
    assert Path(location).read_bytes() != first
    with pytest.raises(redis.ResponseError, match="syntax"):
        client.execute_command("AMBER.BACKUP", "x.amber", "FORCE")
    assert files_outside(sandbox, server.data) == []
    # The backup folder inside the data folder does not disturb recovery.
    server.stop()
    again = server_factory()
    assert again.redis().get("t:k2") == b"v2"


def test_an_unexpected_error_does_not_leak_its_text(
    server_factory: SandboxedFactory, sandbox: Path
) -> None:
    """A host failure (here: the backup folder is a file) answers without internals."""
    folder = sandbox / "not-a-folder"
    folder.write_text("x")
    server = server_factory("--backup-dir", str(folder))
    with pytest.raises(redis.ResponseError) as failed:
        server.redis().execute_command("AMBER.BACKUP", "b.amber")
    text = str(failed.value)
    assert "Error:" not in text and str(folder) not in text
    assert_responsive(server)


def test_the_redis_config_dir_attack_is_refused(
    server_factory: SandboxedFactory, sandbox: Path
) -> None:
    """Redis' classic ``CONFIG SET dir …; CONFIG SET dbfilename …; SAVE``: no command
    but AMBER.BACKUP takes a path, and the settings that name files are fixed at start."""
    server = server_factory()
    client = server.redis()
    client.set("t:payload", CRON_LINE)
    target = sandbox / "tmp"
    for name, value in [
        ("dir", str(target)),
        ("dbfilename", "cron"),
        ("appendfilename", "cron"),
        ("logfile", str(target / "cron")),
    ]:
        with pytest.raises(redis.ResponseError, match=r"immutable config|Unknown option"):
            client.config_set(name, value)
    for command in [("DEBUG", "RELOAD"), ("MODULE", "LOAD", str(target / "x.so"))]:
        with pytest.raises(redis.ResponseError):
            client.execute_command(*command)
    assert client.save() is True
    assert client.config_get("dir")["dir"] == str(server.data.resolve())
    assert files_outside(sandbox, server.data) == []
    assert_responsive(server)
