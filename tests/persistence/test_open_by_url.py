"""``amber.open(url)`` on every backend: durability modes, snapshots, locks, URL errors."""

from __future__ import annotations

import pathlib
import sqlite3
import threading

import pytest
import services

import amber
from amber.config import Config
from amber.errors import InvalidArgument, Locked
from amber.persistence import open_backend

KINDS = ["log", "sqlite", "postgres", "s3"]


def url_for(kind: str, tmp_path: pathlib.Path) -> str:
    if kind == "log":
        return str(tmp_path / "data")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'amber.db'}"
    if kind == "postgres":
        return services.fresh_postgres_url()
    return services.s3_url()


@pytest.mark.parametrize("durability", ["always", "interval", "never"])
@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_writers_then_reopen(kind: str, durability: str, tmp_path: pathlib.Path) -> None:
    url = url_for(kind, tmp_path)
    db = amber.open(url, durability=durability, interval_ms=20)
    assert db.stats()["backend"] == ("log" if kind == "log" else kind)
    table = db.table("t")

    def writer(n: int) -> None:
        for i in range(40):
            table.put(f"{n}-{i}", {"n": n, "i": i})

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    table.merge("0-0", {"extra": True})
    revision = db.revision
    db.close()
    with amber.open(url, jobs=False) as reopened:
        assert reopened.revision == revision == 321
        assert len(reopened.table("t")) == 320
        assert reopened.table("t")["0-0"] == {"n": 0, "i": 0, "extra": True}


@pytest.mark.parametrize("kind", KINDS)
def test_snapshots_through_the_database(kind: str, tmp_path: pathlib.Path) -> None:
    url = url_for(kind, tmp_path)
    with amber.open(url, keep_snapshots=1, jobs=False) as db:
        table = db.table("t")
        for round_ in range(3):
            for i in range(100):
                table.put(f"k{i}", round_)
            db.snapshot()
        table.delete("k0")
        revision = db.revision
    with amber.open(url, jobs=False) as db:
        assert db.revision == revision
        assert len(db.table("t")) == 99 and db.table("t")["k5"] == 2
        assert db.recovery_notes == []


@pytest.mark.parametrize("kind", KINDS)
def test_second_open_is_locked(kind: str, tmp_path: pathlib.Path) -> None:
    url = url_for(kind, tmp_path)
    with amber.open(url, jobs=False) as db:
        db.table("t").put("k", 1)
        with pytest.raises(Locked):
            amber.open(url, jobs=False)
        assert db.table("t").put("k", 2) == 2  # the refused open disturbed nothing
    with amber.open(url, jobs=False) as db:
        assert db.table("t")["k"] == 2


def test_relaxed_modes_sync_before_close_on_sql(tmp_path: pathlib.Path) -> None:
    """``never`` commits without fsync; close commits a durable marker covering them."""
    path = tmp_path / "amber.db"
    with amber.open(f"sqlite:///{path}", durability="never", jobs=False) as db:
        db.table("t").put("k", 1)
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT value FROM amber_meta WHERE name = 'synced'").fetchall()
    finally:
        conn.close()
    assert rows == [("1",)]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", "names a host"),
        ("sqlite:///", "has no file"),
        ("sqlite:///x.db?color=red", "unknown sqlite URL options"),
        ("sqlite:///x.db?table_prefix=Bad-Prefix", "table prefix"),
        ("s3:///prefix", "not an s3://bucket/prefix URL"),
        ("s3://bucket/p?lease_seconds=soon", "bad number"),
        ("s3://bucket/p?colour=red", "unknown s3 URL options"),
        ("ftp://host/x", "unsupported storage scheme"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        open_backend(url, Config())


def test_sqlite_file_in_a_missing_folder(tmp_path: pathlib.Path) -> None:
    backend = open_backend(f"sqlite:///{tmp_path / 'nope' / 'x.db'}", Config())
    with pytest.raises(InvalidArgument, match="no folder"):
        backend.recover()


def test_sqlite_file_that_is_not_a_database(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"this is not a database file, not at all" * 100)
    backend = open_backend(f"sqlite:///{path}", Config())
    with pytest.raises(amber.errors.Corrupted, match="not a database"):
        backend.recover()


def test_s3_prefix_with_foreign_objects_is_refused() -> None:
    client = services.s3_client()
    client.put_object(Bucket=services.BUCKET, Key="foreign-data/notes.txt", Body=b"mine")
    backend = open_backend(services.s3_url("foreign-data"), Config())
    with pytest.raises(InvalidArgument, match="not an Amber prefix"):
        backend.recover()
    reply = client.list_objects_v2(Bucket=services.BUCKET, Prefix="foreign-data/")
    assert [o["Key"] for o in reply["Contents"]] == ["foreign-data/notes.txt"]  # untouched


def test_s3_missing_bucket() -> None:
    services.s3_endpoint()
    url = f"s3://no-such-bucket-here/p?endpoint_url={services.s3_endpoint()}"
    with pytest.raises(InvalidArgument, match="does not exist"):
        open_backend(url, Config()).recover()


def test_postgres_locked_message_names_the_holder() -> None:
    url = services.fresh_postgres_url()
    first = open_backend(url, Config())
    first.recover()
    try:
        with pytest.raises(Locked, match=r"application 'amber pid \d+'"):
            open_backend(url, Config()).recover()
    finally:
        first.close()


def test_postgres_password_is_not_in_messages() -> None:
    backend = open_backend("postgresql://u:s3cret@127.0.0.1:1/db?table_prefix=x_", Config())
    assert "s3cret" not in repr(backend)
    with pytest.raises(amber.errors.StorageFailed) as info:
        backend.recover()
    assert "s3cret" not in str(info.value)


def test_s3_reads_go_through_the_object_cache(tmp_path: pathlib.Path) -> None:
    from amber.persistence.s3 import S3Backend

    url = services.s3_url()
    with amber.open(url, jobs=False) as db:
        for i in range(20):
            db.table("t").put(f"k{i}", i)
    backend = open_backend(url, Config())
    assert isinstance(backend, S3Backend)
    recovered = backend.recover()
    assert len(list(recovered.records)) == 20
    assert backend.cache.hits >= 20  # verified once from S3, handed back from the cache
    backend.close()
