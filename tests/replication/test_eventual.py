"""Eventual tables (#15) on a real 3-process cluster: local writes, convergence, skew, GC.

A table declared eventual takes writes on any member at once — also alone,
without a quorum — and the members converge by last writer wins. Real
``amber serve`` processes; redis-py and httpx as clients.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis

from amber.replication.local import LocalCluster, LocalNode, free_base_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("eventual")
    old = os.environ.get("AMBER_CLUSTER_TIMEOUT")
    os.environ["AMBER_CLUSTER_TIMEOUT"] = "2"  # a strong write without quorum fails fast
    c = LocalCluster(
        root / "cluster",
        3,
        base_port=free_base_port(4),
        extra_args=["--allow-clock-offset", "--max-clock-skew-ms", "3000"],
    )
    try:
        c.start_all()
        declare(c.nodes[0], "presence")
        yield c
    finally:
        c.stop_all()
        if old is None:
            os.environ.pop("AMBER_CLUSTER_TIMEOUT", None)
        else:
            os.environ["AMBER_CLUSTER_TIMEOUT"] = old


def client(node: LocalNode, timeout: float = 10) -> redis.Redis:
    return redis.Redis(host=node.host, port=node.resp_port, socket_timeout=timeout)


def declare(node: LocalNode, table: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            assert client(node).execute_command(
                "AMBER.TABLE", table, "CONSISTENCY", "eventual"
            ) == (b"eventual")
            return
        except redis.exceptions.TryAgainError:  # the cluster is still electing
            assert time.monotonic() < deadline
            time.sleep(0.2)


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, "did not converge in time"
        time.sleep(0.1)


def docs(node: LocalNode, prefix: str) -> dict[str, Any]:
    """The member's documents under ``prefix``; a key deleted between KEYS and its
    JSON.GET (a peer's delete pulled in meanwhile) is left out, as a later KEYS would."""
    c = client(node)
    found = {}
    for key in c.keys(prefix):
        text = c.execute_command("JSON.GET", key)
        if text is not None:
            found[key.decode()] = json.loads(text)
    return found


def converged(nodes: list[LocalNode], prefix: str) -> dict[str, Any] | None:
    views = [docs(n, prefix) for n in nodes]
    return views[0] if all(v == views[0] for v in views) else None


def status(node: LocalNode) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(client(node).execute_command("AMBER.LWW", "STATUS"))
    return result


def test_every_member_takes_writes_and_they_converge(cluster: LocalCluster) -> None:
    n1, n2, n3 = cluster.nodes
    for node in cluster.nodes:  # the consistency went through Raft: every member knows
        assert [b"presence", b"eventual", 0] in client(node).execute_command("AMBER.TABLES")
    client(n1).execute_command("JSON.SET", "presence:ada", "$", '{"status": "away"}')
    eventually(lambda: converged(cluster.nodes, "presence:ada"))
    # concurrent merges of different fields on different members both survive
    client(n2).execute_command("JSON.MERGE", "presence:ada", "$", '{"status": "online"}')
    client(n3).execute_command("JSON.MERGE", "presence:ada", "$", '{"device": "phone"}')
    client(n1).set("presence:bob", "here")
    client(n3).delete("presence:bob")
    final = eventually(lambda: converged(cluster.nodes, "presence:*"))
    assert final == {"presence:ada": {"status": "online", "device": "phone"}}


def test_a_member_alone_still_takes_eventual_writes_and_catches_up(cluster: LocalCluster) -> None:
    n1, n2, n3 = cluster.nodes
    cluster.stop(n2)
    cluster.stop(n3)
    try:
        c1 = client(n1, timeout=8)
        began = time.monotonic()
        c1.set("presence:alone", "n1")
        c1.execute_command("JSON.SET", "presence:carol", "$", '{"seen": 1}')
        assert time.monotonic() - began < 1.0  # local log only: no quorum needed
        assert c1.get("presence:alone") == b"n1"  # and read without a Raft barrier
        with pytest.raises(redis.RedisError):  # a strong table needs the quorum
            c1.set("strong:k", "v")
    finally:
        cluster.start(n2)
        cluster.start(n3)
    client(n2).execute_command("JSON.MERGE", "presence:carol", "$", '{"from": "n2"}')
    final = eventually(lambda: converged(cluster.nodes, "presence:*"), timeout=30)
    assert final["presence:alone"] == "n1"
    assert final["presence:carol"] == {"seen": 1, "from": "n2"}


def test_watch_events_say_which_member_wrote_and_when(cluster: LocalCluster) -> None:
    n1, n2, _ = cluster.nodes
    conn = redis.Connection(host=n2.host, port=n2.resp_port, socket_timeout=10)
    conn.connect()
    try:
        conn.send_command("AMBER.WATCH", "presence:w*")
        conn.read_response(push_request=True)
        client(n1).set("presence:w1", "x")
        message = conn.read_response(push_request=True)
        assert message[0] == b"amber.watch" and message[3] == b"presence:w1"
        assert message[-1].decode().endswith("@n1")  # ms.counter@origin
    finally:
        conn.disconnect()
    base = f"http://{n1.host}:{n1.http_port}"
    with httpx.Client(timeout=10) as http:
        made = http.put(f"{base}/v1/tables/sessions", json={"consistency": "eventual"})
        assert made.status_code == 200 and made.json()["consistency"] == "eventual"
        listed = {
            t["name"]: t["consistency"] for t in http.get(f"{base}/v1/tables").json()["tables"]
        }
        assert listed["sessions"] == "eventual" and listed["presence"] == "eventual"
        bad = http.put(f"{base}/v1/tables/sessions", json={"consistency": "strong"})
        assert bad.status_code == 400


def test_a_clock_too_far_ahead_is_refused_until_it_agrees(cluster: LocalCluster) -> None:
    n1, _, n3 = cluster.nodes
    client(n3).execute_command("AMBER.LWW", "CLOCK-OFFSET", 6000)  # max skew is 3000
    try:
        client(n3).set("presence:skewed", "future")
    finally:
        client(n3).execute_command("AMBER.LWW", "CLOCK-OFFSET", 0)
    eventually(lambda: all(p["refused"] >= 1 for p in status(n1)["peers"] if p["id"] == "n3"))
    assert client(n1).get("presence:skewed") is None  # not applied while it is that far ahead
    metrics = httpx.get(f"http://{n1.host}:{n1.http_port}/metrics", timeout=10).text
    assert 'amber_lww_clock_refused_total{peer="n3"} 1.0' in metrics
    # once the wall clocks pass it (3 s later), it is applied everywhere
    eventually(lambda: converged(cluster.nodes, "presence:skewed"), timeout=20)
    assert client(n1).get("presence:skewed") == b"future"


def test_tombstones_are_collected_once_every_member_has_them(cluster: LocalCluster) -> None:
    n1, _, _ = cluster.nodes
    client(n1).set("presence:temp", "1")
    client(n1).delete("presence:temp")
    eventually(lambda: converged(cluster.nodes, "presence:temp") == {})
    assert any(status(n)["tombstones"] >= 1 for n in cluster.nodes)  # kept at first
    eventually(lambda: all(status(n)["tombstones"] == 0 for n in cluster.nodes), timeout=40)
    assert all(status(n)["tombstones_collected"] >= 1 for n in cluster.nodes)
    client(n1).set("presence:temp", "2")  # the key can live again
    assert eventually(lambda: converged(cluster.nodes, "presence:temp")) == {"presence:temp": "2"}


def test_bad_input_is_refused_clearly(cluster: LocalCluster) -> None:
    c = client(cluster.nodes[0])
    for args in (
        ("AMBER.TABLE", "presence", "CONSISTENCY", "strong"),  # set at creation
        ("AMBER.TABLE", "x", "CONSISTENCY", "sometimes"),
        ("AMBER.TABLE", "bad name", "CONSISTENCY", "eventual"),
        ("AMBER.LWW", "PULL", "n9", "-", "-1", "10"),
        ("AMBER.LWW", "BOGUS"),
    ):
        with pytest.raises(redis.ResponseError):
            c.execute_command(*args)
    with pytest.raises(redis.ResponseError, match="conditions"):
        c.execute_command(
            "AMBER.TXN",
            json.dumps(
                {
                    "compares": [["presence:ada", "version", "=", 1]],
                    "ops": [["delete", "presence:ada"]],
                }
            ),
        )
    with pytest.raises(redis.ResponseError, match="both"):
        c.execute_command(
            "AMBER.TXN", json.dumps({"ops": [["put", "presence:z", 1], ["put", "strong:z", 1]]})
        )


def test_a_transaction_answers_the_stamps_of_its_eventual_writes(cluster: LocalCluster) -> None:
    """``"stamps": true``: each write's stamp, the one last-writer-wins compares (the
    chaos checker relies on it); a later write on another member is stamped greater."""
    n1, n2, _ = cluster.nodes
    spec = {
        "ops": [["put", "presence:st", {"a": 1}], ["merge", "presence:st", {"b": 2}]],
        "stamps": True,
    }
    revision, stamps = client(n1).execute_command("AMBER.TXN", json.dumps(spec))
    assert isinstance(revision, int) and len(stamps) == 2
    parsed = [(int(t.split(b".")[0]), int(t.split(b".")[1].split(b"@")[0])) for t in stamps]
    assert all(s.endswith(b"@n1") for s in stamps) and parsed[0] < parsed[1]
    eventually(lambda: converged(cluster.nodes, "presence:st"))
    spec = {"ops": [["delete", "presence:st"]], "stamps": True}
    _, (later,) = client(n2).execute_command("AMBER.TXN", json.dumps(spec))
    ms, _, rest = later.partition(b".")
    assert later.endswith(b"@n2") and (int(ms), int(rest.split(b"@")[0])) > parsed[1]
    assert client(n1).execute_command("AMBER.TXN", json.dumps({"ops": [["put", "s:x", 1]]})) >= 1
    strong = client(n1).execute_command(
        "AMBER.TXN", json.dumps({"ops": [["put", "s:x", 2]], "stamps": True})
    )
    assert strong[1] == []  # a strong table's writes have no stamps
    with pytest.raises(redis.ResponseError, match="stamps"):
        client(n1).execute_command("AMBER.TXN", json.dumps({"ops": [], "stamps": 1}))
