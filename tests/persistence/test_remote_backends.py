"""What only the remote backends have: leases, lost sessions, leftovers, damaged snapshots."""

from __future__ import annotations

import pathlib
import time

import pytest
import services
from persistence_support import (
    SMALL,
    PostgresHarness,
    S3Harness,
    SqliteHarness,
    chunks_for,
    drain,
    expected,
    flipped,
    payload,
)

from amber.errors import Corrupted, StorageFailed
from amber.persistence import open_backend
from amber.persistence.s3 import S3Backend


def write(harness: SqliteHarness | PostgresHarness | S3Harness, last: int, snap: int) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, last + 1):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    backend.write_snapshot(snap, chunks_for(snap, 4))
    backend.close()


def test_s3_expired_lease_is_taken_over_and_the_old_writer_is_fenced(
    tmp_path: pathlib.Path,
) -> None:
    harness = S3Harness(tmp_path)
    old, _ = harness.reopen()
    assert isinstance(old, S3Backend)
    old.append(1, payload(1))
    old.flush(sync=True)
    old._lease._stop.set()  # type: ignore[union-attr]  # the old writer hangs: no renewals
    time.sleep(harness.lease_seconds + 0.3)
    new, recovered = harness.open()
    assert any("took over the expired writer lease" in note for note in recovered.notes)
    assert drain(recovered) == (None, [], expected(1, 1))
    new.append(2, payload(2))
    new.flush(sync=True)
    old.append(2, b"from the old writer")
    with pytest.raises(StorageFailed):
        old.flush(sync=True)
    with pytest.raises(StorageFailed):  # and it stays stopped
        old.flush(sync=True)
    new.close()
    old.abandon()
    _, state = harness.reopen()
    assert state == (None, [], expected(1, 2))
    harness.close_all()


def test_s3_wal_objects_cannot_be_written_twice(tmp_path: pathlib.Path) -> None:
    """The fence under the lease: a WAL object key is created once (If-None-Match)."""
    harness = S3Harness(tmp_path)
    backend, _ = harness.reopen()
    backend.append(1, payload(1))
    backend.flush(sync=True)
    key = harness._keys("wal/")[0]
    client = services.s3_client()
    with pytest.raises(client.exceptions.ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=services.BUCKET, Key=key, Body=b"x", IfNoneMatch="*")
    harness.close_all()


def test_s3_damaged_snapshot_object_is_named(tmp_path: pathlib.Path) -> None:
    harness = S3Harness(tmp_path)
    write(harness, 20, 20)
    (key,) = harness._keys("snapshots/")
    client = services.s3_client()
    data = client.get_object(Bucket=services.BUCKET, Key=key)["Body"].read()
    client.put_object(Bucket=services.BUCKET, Key=key, Body=flipped(data, len(data) - 30))
    with pytest.raises(Corrupted, match=key):
        harness.reopen()
    harness.close_all()


@pytest.mark.parametrize("make", [SqliteHarness, PostgresHarness], ids=["sqlite", "postgres"])
def test_sql_leftover_chunks_are_removed_and_damaged_chunks_named(
    make: type[SqliteHarness | PostgresHarness], tmp_path: pathlib.Path
) -> None:
    harness = make(tmp_path)
    write(harness, 30, 30)
    p = "amber_" if isinstance(harness, SqliteHarness) else harness.prefix
    q = "?" if isinstance(harness, SqliteHarness) else "%s"
    query = harness._query
    query(f"INSERT INTO {p}snapshot_chunks VALUES (999, 0, {q})", (b"half a snapshot",))
    _, recovered = harness.open()
    assert recovered.notes == ["removed 1 chunks of an unfinished snapshot"]
    assert drain(recovered) == (30, chunks_for(30, 4), [])
    harness.close_all()
    ((sid, frame),) = query(f"SELECT snap_id, frame FROM {p}snapshot_chunks WHERE idx = 2")
    query(
        f"UPDATE {p}snapshot_chunks SET frame = {q} WHERE idx = 2",
        (flipped(bytes(frame), 30),),  # type: ignore[arg-type]
    )
    with pytest.raises(Corrupted, match=f"snap_id={sid} idx=2 in table {p}snapshot_chunks"):
        harness.reopen()
    harness.close_all()
    query(f"DELETE FROM {p}snapshots")
    with pytest.raises(Corrupted, match="snapshot 30 is missing"):
        harness.reopen()
    harness.close_all()


@pytest.mark.parametrize("make", [SqliteHarness, PostgresHarness], ids=["sqlite", "postgres"])
def test_sql_missing_log_rows_are_reported(
    make: type[SqliteHarness | PostgresHarness], tmp_path: pathlib.Path
) -> None:
    harness = make(tmp_path)
    write(harness, 40, 30)
    p = "amber_" if isinstance(harness, SqliteHarness) else harness.prefix
    harness._query(f"DELETE FROM {p}log WHERE seq = 35")
    with pytest.raises(Corrupted, match="some are missing"):
        harness.reopen()
    harness.close_all()
    harness._query(f"DELETE FROM {p}log WHERE seq <= 34")
    with pytest.raises(Corrupted, match=r"records 31\.\.35 are in neither a snapshot"):
        harness.reopen()
    harness.close_all()


def test_postgres_session_lost_stops_writes_and_reopen_recovers(tmp_path: pathlib.Path) -> None:
    harness = PostgresHarness(tmp_path)
    backend, _ = harness.reopen()
    for seq in range(1, 11):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    harness._query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
        (f"amber pid {__import__('os').getpid()}",),
    )
    backend.append(11, payload(11))
    with pytest.raises(StorageFailed):
        backend.flush(sync=True)
    with pytest.raises(StorageFailed, match="reopen"):
        backend.append(12, payload(12))
    backend.close()  # releases what is left; the lock went with the session
    reopened = open_backend(harness.target(), SMALL)
    assert drain(reopened.recover()) == (None, [], expected(1, 10))
    reopened.close()
