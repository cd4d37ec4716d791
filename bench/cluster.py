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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from amber.replication.local import LocalCluster, free_base_port

CLIENTS = 50


def _load(write: object, seconds: float, threads: int) -> tuple[float, list[float]]:
    """Run ``write(thread, i)`` from ``threads`` threads for ``seconds``; ops/s and latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run(t: int) -> None:
        mine: list[float] = []
        i = 0
        while time.monotonic() < stop:
            started = time.perf_counter()
            write(t, i)  # type: ignore[operator]
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
    rate, _ = _load(lambda t, i: d.set(f"k{t}-{i}", i, sync=True, timeout=30), seconds, CLIENTS)
    _, single = _load(lambda t, i: d.set(f"s{i}", i, sync=True, timeout=30), seconds, 1)
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
            rate, _ = _load(lambda t, i: clients[t % 3].set(f"t:k{t}-{i}", i), seconds, CLIENTS)
            _, single = _load(lambda t, i: clients[i % 3].set(f"t:s{i}", i), seconds, 1)
            return {"rate": rate, "p50": _pct(single, 0.5), "p99": _pct(single, 0.99)}
        finally:
            cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--pso-node", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument("--ports", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pso_node >= 0:
        ports = [int(p) for p in args.ports.split(",")]
        pysyncobj_node(args.pso_node, ports, args.seconds, args.pso_node == 0)
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
