"""Static sharding at the size issue #14 asks for: 3 Raft groups x 3 real processes.

One module-scoped cluster of 9 ``amber serve`` processes; the clients are
redis-py's ``RedisCluster`` (which must see 3 masters, 6 replicas and 3 slot
ranges, and fan SCAN/DBSIZE out to the masters, as for Redis Cluster, where
both are per node), plain per-group clients, and ``redis-benchmark --cluster``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator

import pytest
from cluster_support import plain, redis_benchmark_cluster, running_cluster
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from amber.cluster.slots import key_slot, split_slots
from amber.replication.local import LocalCluster

SHARDS = 3
KEYS = [f"k3:{i}" for i in range(300)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("shards-3x3")
    with running_cluster(root / "cluster", 3 * SHARDS, shards=SHARDS) as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster: LocalCluster) -> Iterator[RedisCluster]:
    first = cluster.nodes[0]
    c = RedisCluster(host=first.host, port=first.resp_port, socket_timeout=15)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def written(client: RedisCluster) -> list[str]:
    """The 300 keys, written once through ``RedisCluster`` (each value is its key twice)."""
    for key in KEYS:
        assert client.set(key, key * 2)
    return KEYS


def owner(key: str) -> int:
    """The group (from 0) whose slot range holds ``key``."""
    slot = key_slot(key.encode())
    return next(g for g, (low, high) in enumerate(split_slots(SHARDS)) if low <= slot <= high)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``check()`` until it is true: a follower applies a write a heartbeat later."""
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check()


def test_the_client_sees_three_masters_six_replicas(
    cluster: LocalCluster, client: RedisCluster
) -> None:
    assert len(client.get_primaries()) == SHARDS
    assert len(client.get_replicas()) == 2 * SHARDS
    ranges = sorted(tuple(s[:2]) for s in plain(cluster.nodes[0]).execute_command("CLUSTER SLOTS"))
    assert ranges == split_slots(SHARDS)
    info = plain(cluster.nodes[-1]).cluster("INFO")
    assert info["cluster_size"] == "3" and info["cluster_known_nodes"] == "9"


def test_keys_spread_over_the_three_groups(
    cluster: LocalCluster, client: RedisCluster, written: list[str]
) -> None:
    assert [client.get(key) for key in written] == [key.encode() * 2 for key in written]
    node = plain(cluster.nodes[4])
    for key in written[:30]:  # the server hashes as we do
        assert node.execute_command("CLUSTER KEYSLOT", key) == key_slot(key.encode())
    owned = [{k for k in written if owner(k) == g} for g in range(SHARDS)]
    assert all(owned), [len(o) for o in owned]
    for g, members in enumerate(cluster.groups()):
        for member in members:
            # KEYS has no key, so no MOVED: it lists what this member holds.
            eventually(
                lambda m=member, g=g: {k.decode() for k in plain(m).keys("k3:*")} == owned[g]
            )
    firsts = [plain(members[0]) for members in cluster.groups()]
    for key in written[:30]:  # another group's member redirects, its own serves
        for g, group_client in enumerate(firsts):
            if g == owner(key):
                assert group_client.get(key) == key.encode() * 2
            else:
                with pytest.raises(MovedError):
                    group_client.get(key)


def test_dbsize_and_scan_fan_out_to_the_masters(
    cluster: LocalCluster, client: RedisCluster, written: list[str]
) -> None:
    """SCAN and DBSIZE are per node in Redis Cluster; the client merges or sums them.

    redis-py 8.1 fans SCAN out to the masters by itself, but sends a bare
    DBSIZE (like KEYS) to its default node only: the cluster total needs
    ``target_nodes=PRIMARIES``, as against Redis.
    """
    assert sorted(k.decode() for k in client.scan_iter(match="k3:*", count=50)) == sorted(written)
    assert client.dbsize(target_nodes=RedisCluster.PRIMARIES) == len(written)
    default = client.get_default_node()
    group = cluster.group_of(next(n for n in cluster.nodes if n.resp_port == default.port))
    mine = [k for k in written if owner(k) == group]
    assert 0 < client.dbsize() == len(mine) < len(written)


def test_json_through_the_cluster_client(client: RedisCluster) -> None:
    keys = {owner(f"users:{{u{i}}}x"): f"users:{{u{i}}}x" for i in range(40)}
    assert len(keys) == SHARDS  # one JSON document in every group
    for g, key in keys.items():
        assert client.json().set(key, "$", {"group": g, "tags": ["a"]})
        assert client.json().get(key) == {"group": g, "tags": ["a"]}
        assert client.json().get(key, "$.group") == [g]


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="no redis-benchmark")
def test_redis_benchmark_cluster(cluster: LocalCluster) -> None:
    code, out, rates = redis_benchmark_cluster(cluster.nodes[0], "-n", "2000", "-c", "10")
    assert code == 0, out
    assert "Cluster has 3 master nodes" in out, out
    assert set(rates) == {"SET", "GET"} and all(rate > 0 for rate in rates.values()), out
