"""Eventual (last-writer-wins) vs strong (Raft) tables on one 3-member cluster (issue #15).

Three ``amber serve`` processes (``--durability always``: each member's
log is fsynced before a write is acknowledged), every Raft link and every
eventual RESP pull link through the chaos harness's TCP proxies (so the
second part can partition them). Table ``ev`` is declared eventual;
``st`` is a strong table.

1. **Write latency and rate**: ``SET`` of a 40-byte value from redis-py
   clients — one writer (latency), then ``--clients`` writers (writes/s,
   latency under load) — on the strong table sent to the leader, on the
   strong table sent to a follower (it forwards to the leader), and on the
   eventual table sent to that follower (a local write: no round trip).
2. **Convergence after a partition**: cut one member off (Raft and pull
   links), write for ``--partition-seconds`` on both sides (a writer on the
   lone member and one on the majority, ``SET`` and ``JSON.MERGE`` of
   distinct fields on 100 shared keys of eventual table ``evp``), heal,
   and poll every member's state every 50 ms (``AMBER.LWW PULL``: one
   round trip for the table) until all hold the same documents and
   stamps: the time from the heal is printed.

    python bench/eventual.py [--seconds 5] [--clients 16] [--partition-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cluster as cluster_bench  # bench/cluster.py: its load loop
import redis

from amber.chaos.eventual import declare_eventual, member_state
from amber.chaos.proxy import ProxyNetwork
from amber.chaos.wire import find_leader
from amber.replication.local import LocalCluster, LocalNode, free_base_port

VALUE = "x" * 40


def _load(
    write: Callable[[redis.Redis, int, int], object], node: LocalNode, seconds: float, threads: int
) -> tuple[float, list[float]]:
    """``write(client, thread, i)`` from ``threads`` threads, a client each, for ``seconds``:
    ops/s and latencies (``bench/cluster.py``'s load loop)."""
    clients = [
        redis.Redis(host=node.host, port=node.resp_port, socket_timeout=30) for _ in range(threads)
    ]
    try:
        return cluster_bench.load(lambda t, i: write(clients[t], t, i), seconds, threads)
    finally:
        for client in clients:
            client.close()


def _ms(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def latency_rows(cluster: LocalCluster, seconds: float, clients: int) -> list[list[str]]:
    leader = find_leader(cluster, cluster.nodes, timeout=30)
    assert leader is not None
    follower = next(n for n in cluster.nodes if n is not leader)
    cases = [
        ("strong table, on the leader", leader, "st"),
        ("strong table, on a follower", follower, "st"),
        ("eventual table, on that follower", follower, "ev"),
    ]
    rows = []
    for name, node, table in cases:

        def write(client: redis.Redis, t: int, i: int, table: str = table) -> None:
            client.set(f"{table}:k{t}-{i % 500}", VALUE)

        _, single = _load(write, node, seconds, 1)
        rate, loaded = _load(write, node, seconds, clients)
        rows.append(
            [
                name,
                f"{_ms(single, 0.5):.2f}",
                f"{_ms(single, 0.99):.2f}",
                f"{rate:,.0f}",
                f"{_ms(loaded, 0.5):.1f}",
                f"{_ms(loaded, 0.99):.1f}",
            ]
        )
    return rows


def _live(node: LocalNode) -> dict[str, list[object]]:
    """The partition part's keys on ``node`` (with their stamps), tombstones left out."""
    states = member_state(node, timeout=10, table="evp", documents=False)
    return {k: v for k, v in states.items() if v[0] is not None}


def convergence(cluster: LocalCluster, proxies: ProxyNetwork, seconds: float) -> dict[str, float]:
    """Partition one member off for ``seconds`` with writes on both sides; time to converge."""
    alone = cluster.nodes[2]
    majority = cluster.nodes[0]
    proxies.partition([[alone.node_id], [n.node_id for n in cluster.nodes if n is not alone]])
    counts = {alone.node_id: 0, majority.node_id: 0}
    stop = time.monotonic() + seconds

    def writer(node: LocalNode, field: str) -> None:
        client = redis.Redis(host=node.host, port=node.resp_port, socket_timeout=30)
        i = 0
        while time.monotonic() < stop:
            key = f"evp:k{i % 100}"
            if i % 2:
                client.execute_command("JSON.MERGE", key, "$", json.dumps({field: i}))
            else:
                client.execute_command("JSON.SET", key, "$", json.dumps({"by": node.node_id}))
            i += 1
        counts[node.node_id] = i
        client.close()

    threads = [
        threading.Thread(target=writer, args=(alone, "lone")),
        threading.Thread(target=writer, args=(majority, "many")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    diverged = _live(alone) != _live(majority)
    healed = time.monotonic()
    proxies.heal()
    while time.monotonic() - healed < 60:
        views = [_live(n) for n in cluster.nodes]
        if all(v == views[0] for v in views):
            return {
                "seconds": time.monotonic() - healed,
                "writes_alone": counts[alone.node_id],
                "writes_majority": counts[majority.node_id],
                "diverged": float(diverged),
                "keys": len(views[0]),
            }
        time.sleep(0.05)
    raise RuntimeError("did not converge within 60 s of the heal")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--partition-seconds", type=float, default=10.0)
    args = parser.parse_args()
    proxies = ProxyNetwork(seed=15)
    with tempfile.TemporaryDirectory() as folder:
        cluster = LocalCluster(
            Path(folder),
            3,
            base_port=free_base_port(3, low=30_000, high=32_700),
            peer_address=proxies.peer_address,
            resp_peer_address=proxies.resp_address,
        )
        try:
            cluster.start_all()
            declare_eventual(cluster.nodes[0], "ev")
            declare_eventual(cluster.nodes[0], "evp")
            rows = latency_rows(cluster, args.seconds, args.clients)
            converged = convergence(cluster, proxies, args.partition_seconds)
        finally:
            cluster.stop_all()
            proxies.close()
    print(f"3 members, --durability always; SET of {len(VALUE)} bytes; {args.seconds:g} s each")
    print()
    head = [
        "table, member",
        "1 writer p50 ms",
        "p99 ms",
        f"{args.clients} writers: writes/s",
        "p50 ms",
        "p99 ms",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    print(
        f"partition {args.partition_seconds:g} s (1 member cut off, Raft and pull links), "
        f"writes on both sides: {converged['writes_alone']:,.0f} on the lone member, "
        f"{converged['writes_majority']:,.0f} on the majority "
        f"(states differed before the heal: {bool(converged['diverged'])}); "
        f"all {converged['keys']:.0f} keys identical on every member "
        f"{converged['seconds']:.2f} s after the heal"
    )


if __name__ == "__main__":
    main()
