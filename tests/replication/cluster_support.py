"""Helpers shared by the Redis Cluster tests of real ``amber serve`` processes.

Imported by name (``from cluster_support import plain``): the test folders
have no ``__init__.py``, so pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from amber.replication.local import LocalCluster, LocalNode, free_base_port


@contextmanager
def running_cluster(folder: Path, nodes: int, *, shards: int = 1) -> Iterator[LocalCluster]:
    """``nodes`` processes in ``shards`` groups speaking Redis Cluster, stopped at exit.

    Yielded once every node says ``cluster_state:ok``: before that a node's
    CLUSTER SLOTS may not cover every slot, and ``RedisCluster`` refuses it.
    """
    cluster = LocalCluster(
        folder,
        nodes,
        base_port=free_base_port(nodes + 1),
        redis_cluster=True,
        shards=shards,
    )
    cluster.start_all()
    try:
        for node in cluster.nodes:
            wait_ok(node)
        yield cluster
    finally:
        cluster.stop_all()


def plain(node: LocalNode, *, password: str | None = None) -> redis.Redis:
    """A non-cluster client of one node: it sees ``-MOVED`` instead of following it."""
    return redis.Redis(host=node.host, port=node.resp_port, password=password, socket_timeout=15)


def wait_ok(node: LocalNode, timeout: float = 30.0) -> None:
    """Poll until ``node`` says ``cluster_state:ok`` (its group has a leader and a quorum)."""
    deadline = time.monotonic() + timeout
    while plain(node).cluster("INFO")["cluster_state"] != "ok":
        assert time.monotonic() < deadline, f"{node.node_id} never said cluster_state:ok"
        time.sleep(0.1)


def redis_benchmark_cluster(node: LocalNode, *options: str) -> tuple[int, str, dict[str, float]]:
    """``redis-benchmark --cluster -t set,get -q OPTIONS`` against ``node``:
    ``(exit code, output, {"SET": requests/s, "GET": requests/s})``."""
    done = subprocess.run(
        ["redis-benchmark", "--cluster", "-h", node.host, "-p", str(node.resp_port),
         "-t", "set,get", "-q", *options],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    rates = re.findall(r"^(SET|GET): ([\d.]+) requests per second", out, re.M)
    return done.returncode, out, {name: float(rate) for name, rate in rates}
