"""A local cluster of real ``amber serve`` processes, for development and tests.

``amber cluster up``, the cluster tests and the chaos harness all start
nodes the same way: one process per node on loopback, each with its own
data folder, RESP/HTTP/raft ports from a base port, and a shared secret
file. Ports per node ``i`` (from 0): RESP ``base + 10·i``, HTTP ``+1``,
raft ``+2`` (the KV text protocol is off).

``peer_address(from_node, to_node)``, when given, says which raft address
``from_node`` is told for ``to_node`` in its ``--peers`` (by default the
real one): the chaos harness routes links through its TCP proxies with it.
``resp_peer_address(from_node, to_node)`` does the same for the RESP
addresses in ``--cluster-resp-peers`` (the links eventual tables replicate
over); clients still use the real ports.

``shards=S`` (with ``redis_cluster``) splits the nodes into S Raft groups
of equal size (n1..nR the first, and so on), each with its own peers, and
gives every node the same generated shard map (``FOLDER/shard-map.json``)
that splits the 16,384 slots evenly between the groups.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["LocalCluster", "LocalNode", "ensure_secret", "free_base_port"]


def free_base_port(
    nodes: int, *, attempts: int = 200, low: int = 20_000, high: int = 60_000
) -> int:
    """A base port in ``[low, high)`` whose ``base + 10·i + {0, 1, 2}`` are all free now."""
    rng = random.Random()
    for _ in range(attempts):
        base = rng.randrange(low, high, 10)
        wanted = [base + 10 * i + j for i in range(nodes) for j in range(3)]
        if all(_port_free(port) for port in wanted):
            return base
    raise OSError(f"found no {3 * nodes} free ports in {attempts} attempts")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ensure_secret(path: Path) -> Path:
    """Create a random cluster secret at ``path`` (mode 0600) unless one is there."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
    return path


@dataclass
class LocalNode:
    """One member: its ports, folder and (while running) process."""

    node_id: str
    data: Path
    resp_port: int
    http_port: int
    raft_port: int
    host: str = "127.0.0.1"
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def raft_address(self) -> str:
        return f"{self.host}:{self.raft_port}"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.resp_port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class LocalCluster:
    """Start, stop, kill, pause and restart the nodes of a loopback cluster."""

    def __init__(
        self,
        folder: Path,
        nodes: int = 3,
        *,
        base_port: int = 7400,
        durability: str = "always",
        secret_file: Path | None = None,
        extra_args: Iterable[str] = (),
        log_level: str = "warning",
        peer_address: Callable[[LocalNode, LocalNode], str] | None = None,
        resp_peer_address: Callable[[LocalNode, LocalNode], str] | None = None,
        redis_cluster: bool = False,
        shards: int = 1,
    ) -> None:
        if shards < 1 or nodes % shards:
            raise ValueError(f"{nodes} nodes do not split into {shards} equal groups")
        if shards > 1 and not redis_cluster:
            raise ValueError("shards need redis_cluster (the Redis Cluster protocol routes keys)")
        self.folder = Path(folder)
        self.shards = shards
        #: Start the nodes with ``--cluster-mode redis`` (the Redis Cluster protocol).
        self.redis_cluster = redis_cluster
        self.peer_address = peer_address
        self.resp_peer_address = resp_peer_address
        self.secret_file = secret_file or ensure_secret(self.folder / "cluster.secret")
        self.durability = durability
        self.extra_args = list(extra_args)
        self.log_level = log_level
        self.base_port = base_port
        self.nodes = [
            LocalNode(
                f"n{i + 1}",
                self.folder / f"n{i + 1}",
                base_port + 10 * i,
                base_port + 10 * i + 1,
                base_port + 10 * i + 2,
            )
            for i in range(nodes)
        ]
        from amber.cluster.slots import split_slots  # noqa: PLC0415

        #: Each group's slot ranges in the generated map (a group added later has none).
        self.slot_ranges: list[list[tuple[int, int]]] = [[r] for r in split_slots(shards)]
        if shards > 1:  # written once, before any node starts (they start in parallel)
            self.write_map()

    def group_of(self, node: LocalNode) -> int:
        """The index (from 0) of ``node``'s Raft group."""
        return self.nodes.index(node) // (len(self.nodes) // self.shards)

    def groups(self) -> list[list[LocalNode]]:
        """The nodes of each Raft group, in order."""
        return [[n for n in self.nodes if self.group_of(n) == g] for g in range(self.shards)]

    def shard_map(self) -> dict[str, object]:
        """The generated static shard map: group g{i+1} owns the i-th even slot range.

        Only how the nodes start: once slots move (``amber cluster reshard``)
        each group's replicated map wins over this file.
        """
        return {
            "epoch": 1,
            "groups": [
                {
                    "name": f"g{g + 1}",
                    "slots": [list(r) for r in self.slot_ranges[g]],
                    "members": [
                        {
                            "id": n.node_id,
                            "resp": f"{n.host}:{n.resp_port}",
                            "http": f"{n.host}:{n.http_port}",
                        }
                        for n in group
                    ],
                }
                for g, group in enumerate(self.groups())
            ],
        }

    def write_map(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.map_file.write_text(json.dumps(self.shard_map(), indent=1) + "\n")

    def add_group(self) -> list[LocalNode]:
        """Describe one more group, as large as the others and owning no slot yet.

        Start its nodes with ``start``, then add it to the cluster's map with
        ``amber cluster rebalance --add-group`` (or ``Mover.add_group``).
        """
        size = len(self.nodes) // self.shards
        added = [self.new_node() for _ in range(size)]
        self.shards += 1
        self.redis_cluster = True
        self.slot_ranges.append([])
        self.write_map()
        return added

    @property
    def map_file(self) -> Path:
        return self.folder / "shard-map.json"

    def new_node(self) -> LocalNode:
        """Describe one more member (ports after the others'); start it with ``start``."""
        i = len(self.nodes)
        base = self.base_port + 10 * i
        node = LocalNode(f"n{i + 1}", self.folder / f"n{i + 1}", base, base + 1, base + 2)
        self.nodes.append(node)
        return node

    def node(self, node_id: str) -> LocalNode:
        return next(n for n in self.nodes if n.node_id == node_id)

    def command(self, node: LocalNode, members: Iterable[LocalNode] | None = None) -> list[str]:
        """The ``amber serve`` command line of ``node`` (peers: ``members`` or all others)."""
        address = self.peer_address or (lambda _from, to: to.raft_address)
        if members is None:
            members = self.nodes
            if self.shards > 1:
                members = [m for m in self.nodes if self.group_of(m) == self.group_of(node)]
        peers = ",".join(f"{m.node_id}={address(node, m)}" for m in members if m is not node)
        group = [m for m in self.nodes if self.group_of(m) == self.group_of(node)]
        # The members of its own Raft group: eventual tables replicate over RESP among them.
        resp = self.resp_peer_address or (lambda _from, to: f"{to.host}:{to.resp_port}")
        resp_peers = ",".join(f"{m.node_id}={resp(node, m)}" for m in group if m is not node)
        redis_mode = ["--cluster-resp-peers", resp_peers] if resp_peers else []
        if self.redis_cluster:
            redis_mode += ["--cluster-mode", "redis"]
        if self.shards > 1:
            redis_mode += ["--shard-map", str(self.map_file)]
        return [
            sys.executable, "-m", "amber.cli", "serve",
            "--data", str(node.data),
            "--bind", node.host,
            "--port", str(node.resp_port),
            "--http-port", str(node.http_port),
            "--kvtext-port", "-1",
            "--durability", self.durability,
            "--node-id", node.node_id,
            "--raft-port", str(node.raft_port),
            "--peers", peers,
            "--cluster-secret-file", str(self.secret_file),
            "--log-level", self.log_level,
            *redis_mode,
            *self.extra_args,
        ]  # fmt: skip

    def start(self, node: LocalNode, members: Iterable[LocalNode] | None = None) -> None:
        """Start one node's process and wait until it prints ``ready``."""
        node.data.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            self.command(node, members),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # a Ctrl-C in a terminal reaches only `cluster up`
        )
        node.proc = proc
        node.output = []
        ready = threading.Event()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                node.output.append(line.rstrip("\n"))
                del node.output[:-200]
                if line.strip() == "ready":
                    ready.set()
            proc.stdout.close()
            ready.set()

        threading.Thread(target=pump, name=f"amber-{node.node_id}-out", daemon=True).start()
        if not ready.wait(60) or proc.poll() is not None:
            tail = "\n".join(node.output[-20:])
            self.stop(node)
            raise RuntimeError(f"node {node.node_id} did not start:\n{tail}")

    def start_all(self) -> None:
        """Start every node at once (each needs its peers to elect a leader)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            started = [pool.submit(self.start, node) for node in self.nodes]
        try:
            for future in started:
                future.result()
        except BaseException:
            self.stop_all()
            raise

    def stop(self, node: LocalNode, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        proc = node.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a paused node cannot handle SIGTERM
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def kill(self, node: LocalNode) -> None:
        """SIGKILL: the process dies with whatever it had not synced."""
        if node.proc is not None and node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()

    def pause(self, node: LocalNode) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGSTOP)

    def resume(self, node: LocalNode) -> None:
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)

    def wipe(self, node: LocalNode) -> None:
        """Delete a stopped node's data folder, so its next start is a fresh member."""
        if node.running:
            raise RuntimeError(f"node {node.node_id} is running; stop it before wiping")
        shutil.rmtree(node.data, ignore_errors=True)

    def stop_all(self) -> None:
        for node in self.nodes:
            self.stop(node)

    def wait_all(self, deadline: float) -> None:
        """Block until every node exits or ``deadline`` (monotonic) passes."""
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    return
