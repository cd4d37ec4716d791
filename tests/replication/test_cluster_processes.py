"""Real ``amber serve`` cluster members (one process each) on loopback, driven over RESP/HTTP."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from amber.replication.local import LocalCluster, LocalNode, free_base_port


def client(node: LocalNode, **options: Any) -> redis.Redis:
    options.setdefault("socket_timeout", 15)
    return redis.Redis(host=node.host, port=node.resp_port, **options)


def status(node: LocalNode) -> dict[str, Any]:
    return json.loads(client(node).execute_command("AMBER.CLUSTER"))


def wait_leader(cluster: LocalCluster, timeout: float = 20.0) -> LocalNode:
    """The node that every running member names as leader."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            views = {n.node_id: status(n) for n in cluster.nodes if n.running}
        except redis.RedisError:
            time.sleep(0.1)
            continue
        leaders = {v["leader"] for v in views.values()}
        if len(leaders) == 1 and None not in leaders:
            leader = cluster.node(leaders.pop())
            if leader.node_id in views and views[leader.node_id]["state"] == "leader":
                return leader
        time.sleep(0.1)
    raise AssertionError("the running members agree on no leader")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 3, base_port=free_base_port(4))
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


class Writers:
    """Threads writing unique keys round-robin to the members; records what was acknowledged."""

    def __init__(self, nodes: list[LocalNode], count: int = 4) -> None:
        self.nodes = nodes
        self.acked: dict[str, str] = {}
        self.unknown = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(count)]

    def run(self, w: int) -> None:
        i = 0
        while not self.stop.is_set() and i < 5000:
            node = self.nodes[(w + i) % len(self.nodes)]
            key, value = f"t:w{w}-{i}", f"v{i}"
            i += 1
            if not node.running:
                continue
            try:
                client(node, socket_timeout=5).set(key, value)
            except redis.RedisError as exc:
                with self.lock:
                    self.unknown += 1  # may or may not have happened
                    self.errors = [*self.errors[-9:], f"{node.node_id}: {exc}"]
                continue
            with self.lock:
                self.acked[key] = value

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def assert_all_present(node: LocalNode, acked: dict[str, str]) -> None:
    r = client(node)
    keys = list(acked)
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        values = r.mget(part)
        missing = [k for k, v in zip(part, values, strict=True) if v != acked[k].encode()]
        assert not missing, f"{node.node_id} lost {len(missing)} acknowledged writes: {missing[:5]}"


def test_writes_on_any_member_are_read_linearizably_on_every_member(cluster: LocalCluster):
    wait_leader(cluster)
    for round_ in range(20):
        for writer in cluster.nodes:
            client(writer).set("t:x", f"{writer.node_id}-{round_}")
            for reader in cluster.nodes:  # a read that starts after the write's ack sees it
                assert client(reader).get("t:x") == f"{writer.node_id}-{round_}".encode()
    revisions = {client(n).execute_command("AMBER.REV") for n in cluster.nodes}
    assert len(revisions) == 1
    http = httpx.get(f"http://127.0.0.1:{cluster.nodes[2].http_port}/v1/cluster").json()
    assert http["leader"] == wait_leader(cluster).node_id and len(http["members"]) == 3
    info = client(cluster.nodes[0]).info("replication")
    assert info["amber_cluster_members"] == 3


def test_leader_sigkill_elects_a_new_leader_and_loses_no_acknowledged_write(
    cluster: LocalCluster,
):
    old = wait_leader(cluster)
    with Writers(cluster.nodes) as writers:
        time.sleep(1.5)
        cluster.kill(old)
        killed_at = time.monotonic()
        new = wait_leader(cluster, timeout=15)
        elected_in = time.monotonic() - killed_at
        before = len(writers.acked)
        deadline = time.monotonic() + 10
        while len(writers.acked) <= before + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(writers.acked) > before + 20, (
            f"writes did not continue after the failover ({before} acked before, "
            f"{len(writers.acked)} after, {writers.unknown} unknown: {writers.errors})"
        )
    assert new is not old and elected_in < 10
    cluster.start(old)  # rejoins with its data and catches up
    for node in cluster.nodes:
        assert_all_present(node, writers.acked)
    assert len(writers.acked) > 100


def test_whole_cluster_sigkill_and_restart_keeps_every_acknowledged_write(
    cluster: LocalCluster,
):
    wait_leader(cluster)
    with Writers(cluster.nodes) as writers:
        time.sleep(2.0)
        for node in cluster.nodes:
            cluster.kill(node)
    assert writers.acked
    cluster.start_all()
    wait_leader(cluster)
    for node in cluster.nodes:
        assert_all_present(node, writers.acked)


def test_a_fourth_member_joins_online_and_a_member_is_removed(cluster: LocalCluster):
    leader = wait_leader(cluster)
    for i in range(50):
        client(leader).set(f"t:before{i}", i)
    n4 = cluster.new_node()
    cluster.start(n4)  # its peers: the three members
    client(leader).execute_command("AMBER.CLUSTER", "ADD", "n4", n4.raft_address)
    client(cluster.nodes[1]).set("t:after", "yes")
    assert client(n4).get("t:after") == b"yes"
    assert client(n4).get("t:before49") == b"49"
    assert len(status(leader)["members"]) == 4
    follower = next(n for n in cluster.nodes[:3] if n is not leader)
    client(leader).execute_command("AMBER.CLUSTER", "REMOVE", follower.node_id)
    cluster.stop(follower)
    members = {m["id"] for m in status(leader)["members"]}
    assert follower.node_id not in members and len(members) == 3
    client(n4).set("t:three", "ok")  # a quorum of the three remaining
    assert client(leader).get("t:three") == b"ok"


def test_serve_refuses_a_cluster_without_a_secret(tmp_path: Path):
    out = subprocess.run(
        [sys.executable, "-m", "amber.cli", "serve", "--data", str(tmp_path / "d"),
         "--node-id", "n1", "--raft-port", "17391", "--peers", "n2=127.0.0.1:17392",
         "--port", "0", "--http-port", "-1", "--kvtext-port", "-1"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 1
    assert "secret" in out.stderr and "--insecure-cluster" in out.stderr


def test_cluster_up_prints_its_nodes_and_ctrl_c_stops_them_all(tmp_path: Path):

    base = free_base_port(3)
    up = subprocess.Popen(
        [sys.executable, "-m", "amber.cli", "cluster", "up", "--nodes", "3",
         "--data", str(tmp_path / "c"), "--base-port", str(base)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if line.strip() == "ready":
            break
    text = "".join(lines)
    assert all(f"127.0.0.1:{base + 10 * i}" in text for i in range(3)), text
    pids = [int(p) for p in re.findall(r"│ n\d\s+│ (\d+)", text)]
    assert len(pids) == 3, text
    shown = subprocess.run(
        [sys.executable, "-m", "amber.cli", "cluster", "status", "--json",
         "--url", f"redis://127.0.0.1:{base}"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)["members"]) == 3
    up.send_signal(signal.SIGINT)
    rest, _ = up.communicate(timeout=60)
    assert up.returncode == 0 and "stopped" in rest
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
