"""In-process cluster members for tests: ``amber.open_cluster`` on free loopback ports.

Imported by name (``from embedded_cluster import …``) from the replication
and node tests; one place for the ports, names and secret they share.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import amber
from amber import ClusterConfig
from amber.replication.local import free_base_port

__all__ = ["SECRET", "cluster_configs", "open_members", "open_trio", "wait_for_leader"]

#: Long enough for ``ClusterConfig`` (16 bytes at least).
SECRET = "test-secret-of-32-bytes-at-least"


def cluster_configs(n: int, **options: Any) -> list[ClusterConfig]:
    """``n`` members ``n1``… on free loopback raft ports, each listing the others."""
    base = free_base_port(n)
    addresses = {f"n{i + 1}": f"127.0.0.1:{base + 10 * i + 2}" for i in range(n)}
    return [
        ClusterConfig(
            name,
            address,
            {k: v for k, v in addresses.items() if k != name},
            secret=SECRET,
            **options,
        )
        for name, address in addresses.items()
    ]


def open_members(folder: Path, configs: list[ClusterConfig]) -> list[amber.Database]:
    """Open every member at once (each waits for a quorum), in ``folder/<node id>``."""
    with ThreadPoolExecutor(len(configs)) as pool:
        return list(
            pool.map(lambda c: amber.open_cluster(folder / c.node_id, c, jobs=False), configs)
        )


def open_trio(folder: Path, **options: Any) -> list[amber.Database]:
    """Three members with ``options`` (``ClusterConfig`` fields)."""
    return open_members(folder, cluster_configs(3, **options))


def wait_for_leader(dbs: list[amber.Database], timeout: float = 20.0) -> amber.Database:
    """The member that leads with a quorum, once one does (else ``AssertionError``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for db in dbs:
            status = db.cluster_status()
            if status is not None and status["state"] == "leader" and status["has_quorum"]:
                return db
        time.sleep(0.05)
    raise AssertionError("no leader elected")
