"""A 3-node Amber cluster vs a 3-node PySyncObj ``ReplDict`` cluster, side by side (``make bench``).

Amber: three ``amber serve`` processes (Raft journal fsynced before every
acknowledgement), driven over RESP by redis-py clients: 50 concurrent
writers for the rate, one writer for single-write latency. Writes go to
every member round-robin (followers forward to the leader).

PySyncObj: three processes, each a ``SyncObj`` with a ``ReplDict`` and
PySyncObj's defaults (in-memory journal, no fsync at all); it has no
network client, so the load runs inside the first member's process, as
``set(key, value, sync=True)`` from 50 threads, then from one.

    python bench/cluster.py [--seconds 5]

``--shards 1,2,3`` (issue #14) instead runs S Raft groups x 3 replicas for
each S (``LocalCluster(shards=S, redis_cluster=True)``) with the same 50
writer threads, and prints writes/s, latency under that load, the CPU
seconds each server process spends per 1000 writes (``/proc/<pid>/stat``
utime + stime, before and after), and a paper model of a 100-node cluster
from the leader's and a follower's CPU per write. The client is the
cheapest that routes like a cluster client: keys are bucketed by slot
owner once, before the run, and each write is a plain ``redis.Redis`` SET
on its group leader's pool. redis-py's ``RedisCluster`` spends more Python
on every command (CRC16, node lookup, policy resolution): measured here
one writer at a time, ~160-240 us of client CPU per SET against ~110-120
for the plain client, and the client shares this machine's 2 cores with
the servers.

    python bench/cluster.py --shards 1,2,3 [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amber.cluster.slots import key_slot, split_slots
from amber.replication.local import LocalCluster, LocalNode, free_base_port

CLIENTS = 50
REPLICAS = 3


def load(
    write: Callable[[int, int], object], seconds: float, threads: int
) -> tuple[float, list[float]]:
    """Run ``write(thread, i)`` from ``threads`` threads for ``seconds``; ops/s and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(t: int) -> None:
        mine: list[float] = []
        i = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            write(t, i)
            mine.append(time.perf_counter() - started)
            i += 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    began = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(latencies) / (time.monotonic() - began), latencies


def _pct(latencies: list[float], q: float) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def pysyncobj_node(me: int, ports: list[int], seconds: float, lead: bool) -> None:
    """One PySyncObj member; the first one runs the load and prints JSON."""
    from pysyncobj import SyncObj
    from pysyncobj.batteries import ReplDict

    d = ReplDict()
    addresses = [f"127.0.0.1:{p}" for p in ports]
    obj = SyncObj(addresses[me], [a for i, a in enumerate(addresses) if i != me], consumers=[d])
    if not lead:
        time.sleep(seconds * 2 + 30)
        return
    while obj._getLeader() is None:
        time.sleep(0.05)
    d.set("warm", 1, sync=True, timeout=30)
    rate, _ = load(lambda t, i: d.set(f"k{t}-{i}", i, sync=True, timeout=30), seconds, CLIENTS)
    _, single = load(lambda t, i: d.set(f"s{i}", i, sync=True, timeout=30), seconds, 1)
    print(json.dumps({"rate": rate, "p50": _pct(single, 0.5), "p99": _pct(single, 0.99)}))
    sys.stdout.flush()
    os._exit(0)


def bench_pysyncobj(seconds: float) -> dict[str, float]:
    base = free_base_port(1)
    ports = [base, base + 1, base + 2]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--pso-node",
                str(i),
                "--ports",
                ",".join(map(str, ports)),
                "--seconds",
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    try:
        out, _ = procs[0].communicate(timeout=seconds * 4 + 120)
        return dict(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def bench_amber(seconds: float) -> dict[str, float]:
    import redis

    with tempfile.TemporaryDirectory() as folder:
        cluster = LocalCluster(Path(folder), 3, base_port=free_base_port(3))
        cluster.start_all()
        try:
            pools = [
                redis.ConnectionPool(host="127.0.0.1", port=n.resp_port, max_connections=CLIENTS)
                for n in cluster.nodes
            ]
            clients = [redis.Redis(connection_pool=p) for p in pools]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    clients[0].set("t:warm", 1)
                    break
                except redis.RedisError:
                    time.sleep(0.1)
            rate, _ = load(lambda t, i: clients[t % 3].set(f"t:k{t}-{i}", i), seconds, CLIENTS)
            _, single = load(lambda t, i: clients[i % 3].set(f"t:s{i}", i), seconds, 1)
            return {"rate": rate, "p50": _pct(single, 0.5), "p99": _pct(single, 0.99)}
        finally:
            cluster.stop_all()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _leaders(cluster: LocalCluster, timeout: float = 30.0) -> list[LocalNode]:
    """Each group's Raft leader, once all its members name the same master."""
    import redis

    leaders = []
    deadline = time.monotonic() + timeout
    for members in cluster.groups():
        by_address = {f"{n.host}:{n.resp_port}": n for n in members}
        while True:
            named = set()
            for node in members:
                view = redis.Redis(host=node.host, port=node.resp_port, socket_timeout=5)
                nodes = view.execute_command("CLUSTER NODES")
                named |= {
                    a for a, n in nodes.items() if a in by_address and n["flags"].endswith("master")
                }
            if len(named) == 1:
                leaders.append(by_address[named.pop()])
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"no agreed leader in group {members[0].node_id}: {named}")
            time.sleep(0.1)
    return leaders


def _keys_by_group(shards: int, per_group: int = 1000) -> list[list[str]]:
    """``per_group`` key names owned by each group's slot range, hashed once, up front."""
    ranges = split_slots(shards)
    keys: list[list[str]] = [[] for _ in ranges]
    i = 0
    while min(len(k) for k in keys) < per_group:
        key = f"s:{i}"
        slot = key_slot(key.encode())
        group = next(g for g, (low, high) in enumerate(ranges) if low <= slot <= high)
        if len(keys[group]) < per_group:
            keys[group].append(key)
        i += 1
    return keys


def bench_shards(shards: int, seconds: float) -> dict[str, float]:
    """S groups x 3 replicas, 50 writers: rate, latency under load, CPU per 1000 writes."""
    import redis

    keys = _keys_by_group(shards)
    with tempfile.TemporaryDirectory() as folder:
        n = shards * REPLICAS
        cluster = LocalCluster(
            Path(folder), n, base_port=free_base_port(n), redis_cluster=True, shards=shards
        )
        cluster.start_all()
        try:
            leaders = _leaders(cluster)
            clients = [
                redis.Redis(
                    connection_pool=redis.ConnectionPool(
                        host=node.host, port=node.resp_port, max_connections=CLIENTS
                    )
                )
                for node in leaders
            ]
            for g, client in enumerate(clients):
                client.set(keys[g][0], "warm")
            counts = [[0] * shards for _ in range(CLIENTS)]

            def write(t: int, i: int) -> None:
                g = (t + i) % shards
                clients[g].set(keys[g][(i * CLIENTS + t) % len(keys[g])], i)
                counts[t][g] += 1

            pids = {node.node_id: node.proc.pid for node in cluster.nodes if node.proc}
            idle = {node_id: _cpu_seconds(pid) for node_id, pid in pids.items()}
            time.sleep(1.0)  # what a process costs with no writes (Raft heartbeats, ticks)
            before = {node_id: _cpu_seconds(pid) for node_id, pid in pids.items()}
            idle_cpu = sum(before.values()) - sum(idle.values())
            client_before = sum(os.times()[:2])
            began = time.monotonic()
            rate, latencies = load(write, seconds, CLIENTS)
            elapsed = time.monotonic() - began
            client_cpu = sum(os.times()[:2]) - client_before
            used = {node_id: _cpu_seconds(pid) - before[node_id] for node_id, pid in pids.items()}
        finally:
            cluster.stop_all()
    per_group = [sum(c[g] for c in counts) for g in range(shards)]
    leader_ids = {node.node_id for node in leaders}
    leader_cost = [used[node.node_id] / per_group[g] for g, node in enumerate(leaders)]
    follower_cost = [
        used[node.node_id] / per_group[cluster.group_of(node)]
        for node in cluster.nodes
        if node.node_id not in leader_ids
    ]
    total = sum(per_group)
    return {
        "shards": shards,
        "processes": n,
        "rate": rate,
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "leader_s_per_write": sum(leader_cost) / len(leader_cost),
        "follower_s_per_write": sum(follower_cost) / len(follower_cost),
        "servers_s_per_write": sum(used.values()) / total,
        "client_s_per_write": client_cpu / total,
        "server_cores": sum(used.values()) / elapsed,
        "client_cores": client_cpu / elapsed,
        "idle_ms_per_s": idle_cpu * 1000 / n,
        "load": os.getloadavg()[0],
    }


def print_shards(rows: list[dict[str, float]], seconds: float) -> None:
    """The table, then the 100-node paper model from the per-process CPU per write."""
    print(
        f"S Raft groups x {REPLICAS} replicas on loopback, {CLIENTS} writer threads "
        f"(SET to each key's group leader), {seconds:g} s each; latency under that load"
    )
    print(f"this machine has {os.cpu_count()} cores shared by every process and the client\n")
    head = (
        "| shards | processes | writes/s | p50 ms | p99 ms | leader CPU s/1k writes "
        "| follower CPU s/1k writes | all servers CPU s/1k writes | client CPU s/1k writes "
        "| cores busy (servers + client) | idle CPU ms/s per process | load avg |"
    )
    print(head)
    print("|" + " ---: |" * (head.count("|") - 1))
    for r in rows:
        print(
            f"| {r['shards']:.0f} | {r['processes']:.0f} | {r['rate']:,.0f} "
            f"| {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['leader_s_per_write'] * 1000:.3f} | {r['follower_s_per_write'] * 1000:.3f} "
            f"| {r['servers_s_per_write'] * 1000:.3f} | {r['client_s_per_write'] * 1000:.3f} "
            f"| {r['server_cores']:.2f} + {r['client_cores']:.2f} "
            f"| {r['idle_ms_per_s']:.1f} | {r['load']:.1f} |"
        )
    base = rows[0]
    ratios = ", ".join(f"{r['rate'] / base['rate']:.2f}x at {r['shards']:.0f}" for r in rows[1:])
    print(
        f"\nNot a scaling result: {os.cpu_count()} shared cores run every server process and "
        f"the client, so more groups add processes, not cores (rate against 1 shard: {ratios}). "
        "Each group gets a smaller share of the writes, so it commits smaller batches and "
        "its CPU per write rises; rates move with the machine's other load, the CPU "
        "columns much less."
    )
    groups = 33
    print(
        f"\npaper model: {groups} groups x {REPLICAS} replicas = {groups * REPLICAS} processes, "
        "one core each, clients on other machines and enough of them to keep every leader "
        "busy, slots spread evenly, CPU per write as measured here:\n"
        "  cluster writes/s = groups x 1 core / max(leader, follower CPU s per write)"
    )
    for r in rows:
        c_leader, c_follower = r["leader_s_per_write"], r["follower_s_per_write"]
        per_group = 1 / max(c_leader, c_follower)
        print(
            f"  from the {r['shards']:.0f}-shard row: {groups} x 1 / max({c_leader * 1e6:.0f} us, "
            f"{c_follower * 1e6:.0f} us) = {groups} x {per_group:,.0f} "
            f"= {groups * per_group:,.0f} writes/s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--shards", default="", help="e.g. 1,2,3: S groups x 3 replicas each, instead"
    )
    parser.add_argument("--pso-node", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--ports", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pso_node >= 0:
        ports = [int(p) for p in args.ports.split(",")]
        pysyncobj_node(args.pso_node, ports, args.seconds, args.pso_node == 0)
        return
    if args.shards:
        rows = [bench_shards(int(s), args.seconds) for s in args.shards.split(",")]
        print_shards(rows, args.seconds)
        return
    amber = bench_amber(args.seconds)
    pso = bench_pysyncobj(args.seconds)
    print(f"3-node clusters on loopback, {CLIENTS} writers for the rate, 1 for latency")
    print(f"{'':34} {'writes/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'Amber (always, over RESP)':34} {amber['rate']:>10,.0f} "
          f"{amber['p50']:>8.2f} {amber['p99']:>8.2f}")  # fmt: skip
    print(f"{'PySyncObj ReplDict (no fsync)':34} {pso['rate']:>10,.0f} "
          f"{pso['p50']:>8.2f} {pso['p99']:>8.2f}")  # fmt: skip
    print(f"Amber/PySyncObj write rate: {amber['rate'] / pso['rate']:.1f}x (goal >= 2x); "
          f"Amber p50 {amber['p50']:.2f} ms (goal <= 5 ms), "
          f"PySyncObj p50 {pso['p50']:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
