"""Three cluster members in one process (``amber.open_cluster``), real Raft over loopback.

The process-level tests (``test_cluster_processes.py``) cover kills and
restarts; here the nodes' insides can be reached: stores, journals,
watches and the moment a replica lags.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from embedded_cluster import cluster_configs, open_members, wait_for_leader

import amber
from amber import ClusterConfig
from amber.database import Put, Update, UpdateResult
from amber.errors import InvalidArgument


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[amber.Database]]:
    dbs = open_members(tmp_path, cluster_configs(3))
    yield dbs
    for db in dbs:
        db.close()


def _rows(db: amber.Database) -> dict[str, Any]:
    db.barrier()
    return {t: dict(db.table(t).items()) for t in db.tables()}


def test_writes_on_any_member_are_replicated_with_the_same_revisions(trio: list[amber.Database]):
    for i, db in enumerate(trio * 5):
        db.table("t").put(f"k{i}", {"n": i, "by": i % 3})
    trio[1].table("t").merge("k0", {"merged": True})
    trio[2].table("t").delete("k1")
    states = [_rows(db) for db in trio]
    assert states[0] == states[1] == states[2]
    assert states[0]["t"]["k0"] == {"n": 0, "by": 0, "merged": True}
    assert "k1" not in states[0]["t"]
    assert len({db.revision for db in trio}) == 1
    entries = [db.table("t").entry("k2") for db in trio]
    assert len({(e.mod_revision, e.version) for e in entries if e}) == 1


def test_updates_are_computed_alike_on_every_member(trio: list[amber.Database]):
    """An Update op replicates as the op; each member computes the same value."""
    for i in range(30):
        result = trio[i % 3].txn([], [Update("t", "counter", "incr", (2,))])
        outcome = result.entries[0]
        assert isinstance(outcome, UpdateResult) and outcome.result == 2 * (i + 1)
    trio[0].txn([], [Update("t", "counter", "append", ("x",)), Put("t", "after", 1)])
    states = [_rows(db) for db in trio]
    assert states[0] == states[1] == states[2]
    assert states[0]["t"] == {"counter": "60x", "after": 1}  # INCR keeps a text counter text


def test_a_write_is_visible_on_the_member_that_took_it_when_acknowledged(
    trio: list[amber.Database],
):
    for i in range(30):
        db = trio[i % 3]
        db.table("t").put("k", i)
        assert db.table("t").get("k") == i  # read-your-writes without a barrier


def test_watches_on_every_member_see_the_same_events_in_the_same_order(
    trio: list[amber.Database],
):
    watches = [db.watch() for db in trio]

    def writer(db: amber.Database, w: int) -> None:
        for i in range(40):
            db.table("w").put(f"{w}-{i % 7}", i)
            if i % 10 == 9:
                db.txn([], [amber.Merge("w", f"{w}-0", {"txn": i}), amber.Delete("w", f"{w}-1")])

    threads = [threading.Thread(target=writer, args=(db, w)) for w, db in enumerate(trio)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = trio[0].revision
    seen: list[list[tuple[Any, ...]]] = []
    for db, watch in zip(trio, watches, strict=True):
        db.barrier()
        events = []
        for batch in watch.batches():
            events.extend((e.revision, e.table, e.key, e.type, e.value) for e in batch.events)
            if batch.revision >= final:
                break
        watch.close()
        seen.append(events)
    assert seen[0] == seen[1] == seen[2]
    revisions = [r for r, *_ in seen[0]]
    assert revisions == sorted(revisions) and revisions[-1] == final


def test_stale_reads_differ_from_linearizable_ones_only_while_a_replica_lags(
    trio: list[amber.Database],
):
    leader = wait_for_leader(trio)
    follower = next(db for db in trio if db is not leader)
    leader.table("t").put("k", "old")
    follower.barrier()
    assert follower.table("t").get("k") == "old"
    # Holding the follower's store lock stalls its Raft thread (it applies
    # under that lock): the other two members still commit.
    node = follower._node
    node.store.lock.acquire()
    try:
        leader.table("t").put("k", "new")
        assert follower.table("t").get("k") == "old"  # stale: this replica lags
    finally:
        node.store.lock.release()
    follower.barrier()
    assert follower.table("t").get("k") == "new"  # linearizable
    assert leader.table("t").get("k") == "new"


def test_compaction_snapshots_restart_and_a_new_member_catches_up_by_snapshot(tmp_path: Path):
    configs = cluster_configs(4, compaction_entries=40)
    first = configs[:3]
    # The first three do not know n4 yet; it is added online below.
    first = [
        ClusterConfig(c.node_id, c.raft_address, {
            k: v for k, v in c.peers.items() if k != "n4"
        }, secret=c.secret, compaction_entries=40)
        for c in first
    ]  # fmt: skip
    dbs = open_members(tmp_path, first)
    try:
        for i in range(300):
            dbs[i % 3].table("t").put(f"k{i:03d}", i)
        time.sleep(0.5)  # compaction runs on the Raft thread's next ticks
        snapshots = [tmp_path / c.node_id / "raft" / "snapshot.amber" for c in first]
        assert all(p.exists() for p in snapshots)
        journal_entries = [db._node.replicator.journal.stats()["entries"] for db in dbs]
        assert max(journal_entries) < 300, journal_entries

        # Restart one member: snapshot + journal give back the same state.
        dbs[2].close()
        dbs[2] = amber.open_cluster(tmp_path / "n3", first[2], jobs=False)
        assert _rows(dbs[2]) == _rows(dbs[0])

        # A new member joins after compaction: it gets a snapshot.
        n4 = configs[3]
        leader = wait_for_leader(dbs)
        joiner = amber.open_cluster(tmp_path / "n4", n4, jobs=False)
        dbs.append(joiner)
        leader.cluster_change("add", "n4", n4.raft_address)
        deadline = time.monotonic() + 20
        while joiner.revision < leader.revision and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _rows(joiner) == _rows(leader)
        dbs[0].table("t").put("after", 1)
        joiner.barrier()
        assert joiner.table("t").get("after") == 1
        assert len(leader.cluster_status()["members"]) == 4
    finally:
        for db in dbs:
            db.close()


def test_snapshots_are_written_off_the_raft_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a member's snapshot file is being written, its Raft thread goes on.

    The write is held at its start; meanwhile the cluster keeps committing
    (heartbeats and applies run) and the journal is not compacted. Once the
    write ends, the file is in place and the journal is compacted.
    """
    import amber.replication.cluster as cluster_module

    started = threading.Event()
    release = threading.Event()
    real_write = cluster_module.write_chunk_file

    def held_write(files: Any, path: str, last_seq: int, chunks: Any) -> int:
        started.set()
        assert release.wait(30), "the test never released the snapshot write"
        return real_write(files, path, last_seq, chunks)

    monkeypatch.setattr(cluster_module, "write_chunk_file", held_write)
    configs = cluster_configs(3, compaction_entries=40)
    dbs = open_members(tmp_path, configs)
    try:
        for i in range(120):
            dbs[i % 3].table("t").put(f"k{i:03d}", i)
        assert started.wait(20), "no snapshot was started"
        snapshots = [tmp_path / f"n{i}" / "raft" / "snapshot.amber" for i in (1, 2, 3)]
        before = [p.exists() for p in snapshots]
        # Every member's snapshot write is held: writes still commit everywhere.
        for i in range(60):
            dbs[i % 3].table("t").put(f"during{i:02d}", i)
        for db in dbs:
            db.barrier()
            assert db.table("t").get("during59") == 59
        assert [p.exists() for p in snapshots] == before

        def entries() -> list[int]:
            return [db._node.replicator.journal.stats()["entries"] for db in dbs]  # type: ignore[attr-defined]

        held = entries()
        assert min(held) >= 180, held  # nothing compacted while the writes are held
        release.set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (
            all(p.exists() for p in snapshots) and max(entries()) < 100
        ):
            dbs[0].table("t").put("tick", time.monotonic())  # compaction checks run on ticks
            time.sleep(0.1)
        assert all(p.exists() for p in snapshots)
        assert max(entries()) < 100, entries()
    finally:
        release.set()
        for db in dbs:
            db.close()
    # Reopened from snapshot + journal: the same rows as before.
    dbs = open_members(tmp_path, configs)
    try:
        rows = _rows(dbs[0])
        assert rows["t"]["during59"] == 59 and rows["t"]["k119"] == 119
        assert _rows(dbs[1]) == rows
    finally:
        for db in dbs:
            db.close()


def test_cluster_config_refuses_without_a_secret_and_bad_peers():
    with pytest.raises(InvalidArgument, match="secret"):
        ClusterConfig("n1", "127.0.0.1:7390", {"n2": "127.0.0.1:7391"})
    ClusterConfig("n1", "127.0.0.1:7390", {"n2": "127.0.0.1:7391"}, insecure=True)
    with pytest.raises(InvalidArgument, match="itself"):
        ClusterConfig("n1", "127.0.0.1:7390", {"n1": "127.0.0.1:7391"}, insecure=True)
    with pytest.raises(InvalidArgument, match="host:port"):
        ClusterConfig("n1", "127.0.0.1:7390", {"n2": "nowhere"}, insecure=True)


def test_leadership_moves_on_request(trio: list[amber.Database]):
    leader = wait_for_leader(trio)
    target = next(db for db in trio if db is not leader)
    target_id = target.cluster_status()["node_id"]
    leader.table("t").put("k", 1)
    target.barrier()  # caught up: PySyncObj only hands over to a follower that is
    leader.cluster_change("transfer", target_id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and wait_for_leader(trio) is not target:
        time.sleep(0.05)
    assert wait_for_leader(trio) is target
    leader.table("t").put("k", 2)  # the old leader forwards now
    for db in trio:
        db.barrier()
        assert db.table("t").get("k") == 2


def test_only_the_leader_proposes_expirations_and_every_member_applies_them(tmp_path: Path):
    configs = cluster_configs(3)
    with ThreadPoolExecutor(3) as pool:
        dbs = list(
            pool.map(
                lambda c: amber.open_cluster(tmp_path / c.node_id, c, ttl_sweep_ms=50), configs
            )
        )
    try:
        watches = [db.watch(table="t") for db in dbs]
        dbs[1].table("t").put("short", 1, ttl=0.2)
        dbs[2].table("t").put("long", 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any("short" in _rows(db)["t"] for db in dbs):
            time.sleep(0.05)
        kinds = []
        for watch in watches:
            events = []
            for batch in watch.batches():
                events.extend((e.revision, e.key, e.type) for e in batch.events)
                if any(t == "expire" for _, _, t in events):
                    break
            watch.close()
            kinds.append(events)
        assert kinds[0] == kinds[1] == kinds[2]
        assert [k for _, k, t in kinds[0] if t == "expire"] == ["short"]
        assert all(_rows(db)["t"] == {"long": 1} for db in dbs)
        leader = wait_for_leader(dbs)
        for db in dbs:
            if db is not leader:
                db.table("t").put("due", 1, ttl=0.01)
                time.sleep(0.02)
                assert db.sweep_expired() == 0  # a follower never proposes
    finally:
        for db in dbs:
            db.close()
