"""Online resharding (#14): slots move between Raft groups while clients write and read.

Real ``amber serve`` processes (two groups of one member, then a third group
added), redis-py's ``RedisCluster`` as the application, and the mover
(``amber cluster reshard`` / ``rebalance``) as a separate process or object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from cluster_support import plain, wait_ok
from redis.cluster import RedisCluster

from amber.cluster.reshard import Mover, plan_rebalance
from amber.cluster.slots import SLOTS, ShardState, key_slot
from amber.replication.local import LocalCluster, LocalNode, free_base_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("reshard")
    c = LocalCluster(root / "cluster", 2, base_port=free_base_port(4), redis_cluster=True, shards=2)
    c.start_all()
    try:
        for node in c.nodes:
            wait_ok(node)
        yield c
    finally:
        c.stop_all()


def state_of(node: LocalNode) -> ShardState:
    return ShardState.from_doc(json.loads(plain(node).execute_command("AMBER.SLOTS", "GET")))


def app(cluster: LocalCluster) -> RedisCluster:
    first = cluster.nodes[0]
    return RedisCluster(host=first.host, port=first.resp_port, socket_timeout=15)


def seed(cluster: LocalCluster) -> str:
    return f"{cluster.nodes[0].host}:{cluster.nodes[0].resp_port}"


def key_in(first: int, last: int, prefix: str = "k") -> str:
    """A key whose slot is in ``first``-``last``."""
    return next(
        k for k in (f"{prefix}{i}" for i in range(200_000)) if first <= key_slot(k.encode()) <= last
    )


def half_moved(cluster: LocalCluster, lo: int, hi: int, value: str) -> tuple[int, int, str]:
    """A move of g1's ``lo``-th to ``hi``-th slots left where a mover died: importing in
    g2, frozen in g1, with one key written there before; ``(first, last, key)``."""
    g1, g2 = cluster.nodes[0], cluster.nodes[1]
    owned = sorted(state_of(g1).owned())
    first, last = owned[lo], owned[hi]
    key = key_in(first, last, "h")
    app(cluster).set(key, value)
    plain(g2).execute_command("AMBER.SLOTS", "IMPORTING", first, last)
    plain(g1).execute_command("AMBER.SLOTS", "FREEZE", first, last)
    return first, last, key


def amber_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "amber.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_reshard_under_load_loses_no_acknowledged_write_and_never_reads_back(
    cluster: LocalCluster,
) -> None:
    """Counters are INCRed by writers and read by a reader while half the slots move
    to the other group and back. Every acknowledged INCR is in the final value, and
    no read that began after an INCR was acknowledged returns less (a stale read)."""
    keys = [f"c:{i}" for i in range(24)]
    assert {key_slot(k.encode()) < SLOTS // 2 for k in keys} == {True, False}
    client = app(cluster)
    for key in keys:
        client.set(key, 0)
    acked: dict[str, list[tuple[float, int]]] = {k: [] for k in keys}
    reads: list[tuple[str, float, int]] = []
    unknown: dict[str, int] = dict.fromkeys(keys, 0)
    stop = threading.Event()
    deadline = time.monotonic() + 90

    def writer(offset: int) -> None:
        c = app(cluster)
        i = offset
        while not stop.is_set() and time.monotonic() < deadline:
            key = keys[i % len(keys)]
            i += 3
            try:
                value = int(c.incr(key))
            except redis.RedisError:
                unknown[key] += 1
                continue
            acked[key].append((time.monotonic(), value))

    def reader() -> None:
        c = app(cluster)
        i = 0
        while not stop.is_set() and time.monotonic() < deadline:
            key = keys[i % len(keys)]
            i += 1
            began = time.monotonic()
            try:
                raw = c.get(key)
            except redis.RedisError:
                continue
            reads.append((key, began, int(raw or 0)))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    try:
        mover = Mover(seed(cluster), step=1024)
        moved_out = mover.reshard(0, SLOTS // 2 - 1, "g2")
        time.sleep(0.5)
        moved_back = mover.reshard(0, SLOTS // 2 - 1, "g1")
        mover.close()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert moved_out > 0 and moved_back > 0
    final = {key: int(app(cluster).get(key) or 0) for key in keys}
    for key in keys:
        values = [v for _, v in acked[key]]
        assert values, f"no INCR of {key} was acknowledged"
        assert len(set(values)) == len(values), f"{key}: one value acknowledged twice"
        # every acknowledged INCR counted; at most the unknown ones extra
        assert max(values) <= final[key] <= len(values) + unknown[key]
        assert final[key] >= len(values)
    stale = [
        (key, began, seen, value)
        for key, began, seen in reads
        for at, value in acked[key]
        if at < began and seen < value
    ]
    assert not stale, f"reads older than an acknowledged write: {stale[:5]}"
    assert len(reads) > 50
    for node in cluster.nodes:
        st = state_of(node)
        assert not st.frozen and not st.importing
    assert sorted(plain(cluster.nodes[0]).execute_command("CLUSTER SLOTS"))[0][:2] == [
        0,
        SLOTS // 2 - 1,
    ]


def test_a_moved_slot_redirects_and_bad_moves_are_refused(cluster: LocalCluster) -> None:
    g1, g2 = cluster.nodes
    key = key_in(0, 99, "m")
    slot = key_slot(key.encode())
    app(cluster).set(key, "v")
    before = state_of(g1).map.epoch
    mover = Mover(seed(cluster))
    assert mover.reshard(slot, slot, "g2") == 1
    mover.close()
    with pytest.raises(redis.exceptions.MovedError) as moved:
        plain(g1).get(key)
    assert str(moved.value) == f"{slot} {g2.host}:{g2.resp_port}"
    assert plain(g2).get(key) == b"v"
    assert state_of(g1).map.epoch > before and state_of(g2).map.epoch > before
    assert plain(g1).execute_command("AMBER.SLOTS", "EVICT", slot, slot) == 0  # already gone
    # refusals: nothing changes
    doc = plain(g1).execute_command("AMBER.SLOTS", "GET")
    cases = [
        ("ASSIGN", 200, 300, "g2", "EPOCH", 10**6),  # not frozen here
        ("LOAD", b"\x94\xa1t\xa1k\x01\xc0"),  # not importing
        ("IMPORTING", 0, 10),  # g1 owns them
        ("FREEZE", SLOTS - 1, SLOTS - 1),  # g2 owns it
        ("ASSIGN", 0, 1, "nope", "EPOCH", 10**6),
        ("MAP", json.dumps({**state_of(g1).to_doc(), "epoch": before})),  # older
        ("EXPORT", 0, 10),  # not frozen
        ("FREEZE", 5, 1),
        ("BOGUS",),
    ]
    for args in cases:
        with pytest.raises(redis.ResponseError):
            plain(g1).execute_command("AMBER.SLOTS", *args)
    assert plain(g1).execute_command("AMBER.SLOTS", "GET") == doc


def test_an_interrupted_move_is_finished_by_running_the_mover_again(
    cluster: LocalCluster,
) -> None:
    g1, g2 = cluster.nodes
    # a mover that died after freezing: the slots are served by nobody
    first, last, key = half_moved(cluster, 200, 263, "before")
    with pytest.raises(redis.exceptions.TryAgainError):
        plain(g1).get(key)
    with pytest.raises(redis.exceptions.TryAgainError):
        plain(g1).set(key, "during")
    run = amber_cli(
        "cluster", "reshard", "--slots", f"{first}-{last}", "--to", "g2", "--url",
        f"redis://{seed(cluster)}",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "moved slots" in run.stdout
    assert plain(g2).get(key) == b"before"
    for node in cluster.nodes:
        st = state_of(node)
        assert not st.frozen and not st.importing


def test_restart_keeps_the_replicated_map(cluster: LocalCluster) -> None:
    g1 = cluster.nodes[0]
    before = state_of(g1)
    cluster.stop(g1)
    cluster.start(g1)
    wait_ok(g1)
    after = state_of(g1)
    assert after.map.ranges == before.map.ranges and after.map.epoch == before.map.epoch


def test_adding_a_group_and_rebalancing_is_one_command(cluster: LocalCluster) -> None:
    client = app(cluster)
    keys = [f"r:{i}" for i in range(120)]
    for key in keys:
        client.set(key, key)
    (added,) = cluster.add_group()
    cluster.start(added)
    wait_ok(added)
    run = amber_cli(
        "cluster", "rebalance", "--url", f"redis://{seed(cluster)}", "--step", "2048",
        "--add-group", "g3", "--member",
        f"{added.node_id}={added.host}:{added.resp_port},{added.host}:{added.http_port}",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    shares = {}
    for node in cluster.nodes:
        st = state_of(node)
        shares[st.group] = len(st.owned())
        assert set(st.map.groups) == {"g1", "g2", "g3"}
    assert sorted(shares.values()) == [5461, 5461, 5462]
    fresh = app(cluster)
    assert [fresh.get(k) for k in keys] == [k.encode() for k in keys]
    assert sum(plain(n).dbsize() for n in cluster.nodes) >= len(keys)
    assert len(plain(added).execute_command("CLUSTER SLOTS")) >= 3


def test_plan_rebalance_moves_only_the_surplus() -> None:
    owners = ["g1"] * (SLOTS // 2) + ["g2"] * (SLOTS // 2)
    moves = plan_rebalance(owners, ["g1", "g2", "g3"])
    after: dict[str, Any] = {}
    for m in moves:
        assert m.target == "g3"
        owners[m.first : m.last + 1] = ["g3"] * (m.last - m.first + 1)
    for g in owners:
        after[g] = after.get(g, 0) + 1
    assert sorted(after.values()) == [5461, 5461, 5462]
    assert (
        sum(m.last - m.first + 1 for m in moves) == 5461
        or sum(m.last - m.first + 1 for m in moves) == 5462
    )
    assert plan_rebalance(owners, ["g1", "g2", "g3"]) == []


def test_exec_checks_its_keys_again_when_it_runs(cluster: LocalCluster) -> None:
    """A MULTI queued while its slot was served, EXECed after the slot froze: refused,
    nothing applied, the connection out of MULTI."""
    node = cluster.nodes[0]
    slot = min(state_of(node).owned())
    key = key_in(slot, slot, "x")
    client = redis.Redis(host=node.host, port=node.resp_port, single_connection_client=True)
    client.set(key, "old")
    for queued in (("GET", key), ("SET", key, "new")):
        assert client.execute_command("MULTI") == b"OK"
        client.execute_command(*queued)  # QUEUED (redis-py turns SET's into False)
        plain(node).execute_command("AMBER.SLOTS", "FREEZE", slot, slot)
        try:
            with pytest.raises(redis.exceptions.TryAgainError):
                client.execute_command("EXEC")
        finally:
            plain(node).execute_command("AMBER.SLOTS", "CANCEL", slot, slot)
        assert client.get(key) == b"old"


def test_a_transaction_spans_one_slot(cluster: LocalCluster) -> None:
    """As in Redis Cluster, EXEC of commands whose keys hash to different slots fails
    with CROSSSLOT and applies nothing (one slot is what one group commits atomically)."""
    node = cluster.nodes[0]
    a, b = sorted(state_of(node).owned())[:2]
    ka, kb = key_in(a, a, "t"), key_in(b, b, "t")
    client = redis.Redis(host=node.host, port=node.resp_port, single_connection_client=True)
    client.delete(ka)
    client.delete(kb)
    assert client.execute_command("MULTI") == b"OK"
    client.execute_command("SET", ka, "1")
    client.execute_command("SET", kb, "1")
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        client.execute_command("EXEC")
    assert client.exists(ka) == 0 and client.exists(kb) == 0
    assert client.execute_command("MULTI") == b"OK"  # out of MULTI: a new one starts
    client.execute_command("DISCARD")


def test_repair_cancels_a_move_nobody_finished_and_drops_its_partial_copy(
    cluster: LocalCluster,
) -> None:
    g1, g2 = cluster.nodes[0], cluster.nodes[1]
    first, last, key = half_moved(cluster, 300, 310, "kept")
    page = plain(g1).execute_command("AMBER.SLOTS", "EXPORT", first, last)
    assert page[0] == b"" and len(page) == 2
    assert plain(g2).execute_command("AMBER.SLOTS", "LOAD", page[1]) == 1
    assert key.encode() in plain(g2).keys("*")  # the partial copy, not served
    mover = Mover(seed(cluster))
    mover.repair(mover.states())  # what any later mover run does first
    mover.close()
    assert plain(g1).get(key) == b"kept"  # served by its owner again
    assert key.encode() not in plain(g2).keys("*")
    for node in cluster.nodes:
        st = state_of(node)
        assert not st.frozen and not st.importing
