"""Backup, restore, export and import (``amber.backup``) against every backend kind."""

from __future__ import annotations

import io
import json
import pathlib
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent / "persistence"))
import services

import amber
from amber import backup as backups
from amber.errors import Corrupted, InvalidArgument

KINDS = ["log", "sqlite", "postgres", "s3"]


def target_for(kind: str, tmp_path: pathlib.Path, name: str = "target") -> str:
    """A new, empty database location of ``kind``."""
    if kind == "log":
        return str(tmp_path / name)
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / name}.db"
    if kind == "postgres":
        return services.fresh_postgres_url()
    return services.s3_url()


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def fill(db: amber.Database) -> None:
    users = db.table("users")
    for i in range(2500):  # more than one snapshot chunk
        users.put(f"u{i:05d}", {"n": i, "tags": ["a", "b"][: i % 3]})
    users.merge("u00001", {"n": None, "name": "ada"})
    users.delete("u00002")
    db.table("empty_after").put("x", 1)
    db.table("empty_after").delete("x")
    db.table("ttl").put("soon", "v", ttl=3600)
    db.table("ttl").put("later", "w", ttl=7200)


def state(db: amber.Database) -> dict[str, Any]:
    """Everything a restore must reproduce: revision, tables, entries."""
    tables = {}
    for name in db.tables():
        table = db.table(name)
        tables[name] = [table.entry(key) for key in table]
    return {"revision": db.revision, "tables": tables}


@pytest.fixture
def source(tmp_path: pathlib.Path) -> Iterator[amber.Database]:
    db = amber.open(tmp_path / "source", jobs=False)
    fill(db)
    yield db
    db.close()


def test_backup_then_restore_into_every_backend_gives_the_same_state(
    source: amber.Database, tmp_path: pathlib.Path, kind: str
) -> None:
    expected = state(source)
    info = backups.backup(source, tmp_path / "b.amber")
    assert (info.revision, info.keys, info.tables) == (expected["revision"], 2501, 3)
    target = target_for(kind, tmp_path)
    restored = backups.restore(tmp_path / "b.amber", target)
    assert restored.revision == expected["revision"]
    with amber.open(target, jobs=False) as db:
        assert state(db) == expected
        assert 3000 < db.table("ttl").ttl("soon") <= 3600  # type: ignore[operator]
        revision = db.table("users").put("new", 1)
        assert revision == expected["revision"] + 1
    with amber.open(target, jobs=False) as db:  # and it stays that way
        assert db.table("users")["new"] == 1


def test_backup_is_consistent_at_one_revision_while_writes_go_on(
    source: amber.Database, tmp_path: pathlib.Path
) -> None:
    stop = threading.Event()
    pair = source.table("pair")

    def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            source.txn([], [amber.Put("pair", "a", i), amber.Put("pair", "b", i)])

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.05)
        seen: list[int] = []
        for n in range(3):
            info = backups.backup(
                source, tmp_path / f"b{n}.amber", progress=lambda d, t: seen.append(d)
            )
            target = tmp_path / f"r{n}"
            backups.restore(tmp_path / f"b{n}.amber", target)
            with amber.open(target, jobs=False) as db:
                assert db.revision == info.revision
                table = db.table("pair")
                assert table.get("a") == table.get("b")  # never half a transaction
    finally:
        stop.set()
        thread.join(timeout=30)
    assert pair["a"] == pair["b"]
    assert seen and seen[-1] == 2501 + 2


def test_backup_to_and_restore_from_s3(source: amber.Database, tmp_path: pathlib.Path) -> None:
    url = services.s3_url().replace("?", ".amber?", 1)
    info = backups.backup(source, url)
    assert info.location.startswith(f"s3://{services.BUCKET}/")
    assert backups.read_backup_info(url).revision == source.revision
    target = target_for("sqlite", tmp_path)
    backups.restore(url, target)
    with amber.open(target, jobs=False) as db:
        assert state(db) == state(source)


def test_backup_of_a_closed_database_by_path(tmp_path: pathlib.Path) -> None:
    with amber.open(f"sqlite:///{tmp_path / 'src.db'}") as db:
        fill(db)
        expected = state(db)
    backups.backup(f"sqlite:///{tmp_path / 'src.db'}", tmp_path / "b.amber")
    backups.restore(tmp_path / "b.amber", tmp_path / "folder")
    with amber.open(tmp_path / "folder", jobs=False) as db:
        assert state(db) == expected


def test_restore_refuses_a_target_with_data_and_changes_nothing(
    source: amber.Database, tmp_path: pathlib.Path, kind: str
) -> None:
    backups.backup(source, tmp_path / "b.amber")
    target = target_for(kind, tmp_path)
    with amber.open(target, jobs=False) as db:
        db.table("mine").put("k", "v")
    with pytest.raises(InvalidArgument, match="already holds data"):
        backups.restore(tmp_path / "b.amber", target)
    with amber.open(target, jobs=False) as db:
        assert db.tables() == ["mine"] and db.revision == 1


def test_damaged_backup_is_refused_before_anything_is_written(
    source: amber.Database, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "b.amber"
    backups.backup(source, path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    target = tmp_path / "target"
    with pytest.raises(Corrupted, match=r"b\.amber"):
        backups.restore(path, target)
    with amber.open(target, jobs=False) as db:
        assert db.revision == 0 and db.tables() == []
    path.write_bytes(b"not a backup at all, just some text")
    with pytest.raises(Corrupted, match="not an Amber backup"):
        backups.read_backup_info(path)


def test_a_failed_backup_leaves_the_old_file(
    source: amber.Database, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "b.amber"
    path.write_bytes(b"old")
    source.close()
    with pytest.raises(amber.errors.Closed):
        backups.backup(source, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".amber")] == []


def test_export_import_round_trip(source: amber.Database, tmp_path: pathlib.Path) -> None:
    out = io.StringIO()
    count = backups.export_jsonl(source, out)
    lines = out.getvalue().splitlines()
    assert count == len(lines) == 2501
    first = json.loads(lines[2])
    assert set(first) >= {"table", "key", "value", "mod_revision", "version", "expires_at_ms"}
    expired = {"table": "ttl", "key": "gone", "value": 1, "expires_at_ms": 1000}
    lines.append(json.dumps(expired))
    (tmp_path / "dump.jsonl").write_text("\n".join(lines) + "\n")
    target = target_for("sqlite", tmp_path)
    assert backups.import_jsonl(target, tmp_path / "dump.jsonl", batch=700) == 2501
    with amber.open(target, jobs=False) as db:
        for name in ("users", "ttl"):
            assert list(db.table(name).items()) == list(source.table(name).items())
        assert "gone" not in db.table("ttl")
        assert 3000 < db.table("ttl").ttl("soon") <= 3600  # type: ignore[operator]
        assert db.revision == 4  # 2501 keys in batches of 700: a logical copy


def test_import_names_the_bad_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"table": "t", "key": "k", "value": 1}\n{"table": "t"}\n')
    with pytest.raises(InvalidArgument, match="line 2"):
        backups.import_jsonl(tmp_path / "db", path)
    path.write_text('{"table": "t", "key": "k", "value": {"x": NaN}}\n')
    with pytest.raises(InvalidArgument, match="line"):
        backups.import_jsonl(tmp_path / "db", path)
    with amber.open(tmp_path / "db", jobs=False) as db:
        assert db.revision == 0
