"""Static sharding (#14): 2 Raft groups x 3 real processes behind one Redis Cluster.

The slots are split by a generated ``--shard-map``; a node answers ``-MOVED``
for a key another group owns. Clients: redis-py's ``RedisCluster``, plain
``redis.Redis`` per group, and ``redis-benchmark --cluster``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest
import redis
from cluster_support import plain, redis_benchmark_cluster, running_cluster
from redis.cluster import RedisCluster
from redis.exceptions import MovedError

from amber.cluster.slots import key_slot, split_slots
from amber.replication.local import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("shards")
    with running_cluster(root / "cluster", 6, shards=2) as c:
        yield c


def test_views_show_both_groups(cluster: LocalCluster) -> None:
    (low, high) = split_slots(2)
    for node in cluster.nodes:
        client = plain(node)
        info = client.cluster("INFO")
        assert info["cluster_size"] == "2" and info["cluster_known_nodes"] == "6"
        assert info["cluster_slots_assigned"] == "16384"
        slots = client.execute_command("CLUSTER SLOTS")
        if info["cluster_state"] == "ok":  # this group has a leader: both ranges are served
            assert sorted(tuple(s[:2]) for s in slots) == [low, high]
        nodes = client.execute_command("CLUSTER NODES")
        assert len(nodes) == 6
        masters = [n for n in nodes.values() if n["flags"].endswith("master")]
        assert len(masters) >= 1


def test_redis_cluster_client_spreads_keys_over_groups(cluster: LocalCluster) -> None:
    first = cluster.nodes[0]
    client = RedisCluster(host=first.host, port=first.resp_port, socket_timeout=15)
    keys = [f"key:{i}" for i in range(200)]
    try:
        for key in keys:
            client.set(key, key.encode() * 2)
        assert all(client.get(key) == key.encode() * 2 for key in keys)
    finally:
        client.close()
    (low, high) = split_slots(2)
    groups = cluster.groups()
    owned = [
        {k for k in keys if low[0] <= key_slot(k.encode()) <= low[1]},
        {k for k in keys if high[0] <= key_slot(k.encode()) <= high[1]},
    ]
    assert owned[0] and owned[1]
    for g, members in enumerate(groups):
        for node in members:
            # KEYS has no key, so no MOVED: it lists what this group holds.
            held = {k.decode() for k in plain(node).keys("key:*")}
            assert held == owned[g], node.node_id
        other = owned[1 - g]
        client_g = plain(members[0])
        target = groups[1 - g][0]
        for key in sorted(other)[:20]:
            slot = key_slot(key.encode())
            # redis-py parses "-MOVED <slot> <host:port>" into MovedError.
            with pytest.raises(MovedError) as read:
                client_g.get(key)
            with pytest.raises(MovedError) as write:
                client_g.set(key, "x")
            for moved in (read, write):
                assert moved.value.slot_id == slot
                assert moved.value.node_addr == (target.host, target.resp_port)


def test_multi_key_commands(cluster: LocalCluster) -> None:
    """CROSSSLOT across slots; one slot of another group: MOVED; of this group: served."""
    client = plain(cluster.nodes[0])  # group 1: slots 0-8191
    assert key_slot(b"b") == 3300 and key_slot(b"a") == 15495
    with pytest.raises(redis.ResponseError, match="don't hash to the same slot"):
        client.mset({"a": 1, "b": 2})
    assert client.mset({"{b}1": 1, "{b}2": 2})
    assert client.mget("{b}1", "{b}2") == [b"1", b"2"]
    target = cluster.groups()[1][0]
    with pytest.raises(MovedError) as moved:
        client.mset({"{a}1": 1, "{a}2": 2})
    assert moved.value.node_addr == (target.host, target.resp_port)
    pipe = client.pipeline(transaction=True)
    pipe.set("{b}3", 3).set("{a}3", 3)
    with pytest.raises(redis.ResponseError):
        pipe.execute()
    assert client.get("{b}3") is None  # the whole transaction was refused
    assert plain(target).get("{a}3") is None


@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="no redis-benchmark")
def test_redis_benchmark_cluster_runs(cluster: LocalCluster) -> None:
    code, out, rates = redis_benchmark_cluster(cluster.nodes[0], "-n", "5000")
    print(out)
    assert code == 0, out
    assert set(rates) == {"SET", "GET"} and all(rate > 0 for rate in rates.values()), out


def test_http_routes_each_key_to_its_group(cluster: LocalCluster) -> None:
    """A single-key route is served by the key's group: another group's key is a 307 to
    it; routes that span groups (scans, listings, transactions) answer 421."""
    node = cluster.nodes[0]
    groups = cluster.groups()
    base = f"http://{node.host}:{node.http_port}"
    low, high = split_slots(2)
    ours = next(
        k for k in (f"u{i}" for i in range(1000)) if key_slot(f"users:{k}".encode()) <= low[1]
    )
    theirs = next(
        k for k in (f"u{i}" for i in range(1000)) if key_slot(f"users:{k}".encode()) >= high[0]
    )
    with httpx.Client(timeout=15) as http:
        for key in (ours, theirs):
            put = http.put(
                f"{base}/v1/tables/users/keys/{key}", json={"k": key}, follow_redirects=True
            )
            assert put.status_code in (200, 201), put.text
        direct = http.get(f"{base}/v1/tables/users/keys/{theirs}?consistency=linearizable")
        assert direct.status_code == 307
        owner = groups[1][0]
        assert direct.headers["location"] == (
            f"http://{owner.host}:{owner.http_port}/v1/tables/users/keys/{theirs}"
            "?consistency=linearizable"
        )
        assert http.get(direct.headers["location"]).json() == {"k": theirs}
        assert http.get(f"{base}/v1/tables/users/keys/{ours}").json() == {"k": ours}
        assert (
            plain(owner).execute_command("JSON.GET", f"users:{theirs}")
            == b'{"k":"%s"}' % theirs.encode()
        )
        for method, path in (
            ("POST", "/v1/txn"),
            ("GET", "/v1/tables"),
            ("GET", "/v1/tables/users"),
        ):
            reply = http.request(method, base + path, json={"ops": []})
            assert reply.status_code == 421, (method, path, reply.text)
        view = http.get(base + "/v1/cluster").json()
        assert set(view["slots"]["groups"]) == {"g1", "g2"} and view["slots"]["group"] == "g1"
        assert view["slots"]["ranges"] == [[*low, "g1"], [*high, "g2"]]
