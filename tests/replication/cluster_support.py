"""Helpers shared by the Redis Cluster tests of real ``amber serve`` processes.

Imported by name (``from cluster_support import plain``): the test folders
have no ``__init__.py``, so pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from amber.replication.local import LocalCluster, LocalNode, free_base_port


@contextmanager
def running_cluster(folder: Path, nodes: int, *, shards: int = 1) -> Iterator[LocalCluster]:
    """``nodes`` processes in ``shards`` groups speaking Redis Cluster, stopped at exit."""
    cluster = LocalCluster(
        folder,
        nodes,
        base_port=free_base_port(nodes + 1),
        redis_cluster=True,
        shards=shards,
    )
    cluster.start_all()
    try:
        yield cluster
    finally:
        cluster.stop_all()


def plain(node: LocalNode) -> redis.Redis:
    """A non-cluster client of one node: it sees ``-MOVED`` instead of following it."""
    return redis.Redis(host=node.host, port=node.resp_port, socket_timeout=15)
