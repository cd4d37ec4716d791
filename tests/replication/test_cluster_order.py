"""One connection's writes take effect in the order sent, across leader changes.

A real three-node cluster (one ``amber serve`` process each, every Raft link
through a proxy that can cut it). One connection pipelines ``SET o:k<round>
<i>`` with ``i`` increasing to the leader while the leader is cut off from the
others long enough for them to elect a new leader, then reconnected: the
entries it appended alone are discarded and retried while the connection's
later writes go on. (Pausing the leader with SIGSTOP instead rarely leaves an
entry only on the leader: it sends each entry at once.) The key's watch
history then shows the order the writes were applied in: it must be
increasing (no write applied after a later one, none applied twice) and hold
every acknowledged write.

The same failure is also made deterministic on three in-process members:
the first entry of writes is reported ``DISCARDED`` (without being sent) a
moment after a later write was proposed. And the apply side's rule (an entry
of an origin is applied only if its seq is the next one) is tested with
entries of chosen seqs sent through Raft, out of order and twice.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from embedded_cluster import open_trio
from pysyncobj import FAIL_REASON

import amber
from amber.chaos.proxy import ProxyNetwork
from amber.database import Put
from amber.node.node import now_ms
from amber.replication.local import LocalCluster, LocalNode, free_base_port
from amber.store.batch import Batch, encode_body, stamp

#: Writes per pipeline; pipelines go back to back on one connection.
BATCH = 25


def client(node: LocalNode, **options: Any) -> redis.Redis:
    options.setdefault("socket_timeout", 20)
    return redis.Redis(host=node.host, port=node.resp_port, **options)


def wait_leader(cluster: LocalCluster, timeout: float = 20.0) -> LocalNode:
    """The node every running member names as leader (and that says so itself)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            views = {
                n.node_id: json.loads(client(n, socket_timeout=2).execute_command("AMBER.CLUSTER"))
                for n in cluster.nodes
                if n.running
            }
        except redis.RedisError:
            time.sleep(0.1)
            continue
        leaders = {v["leader"] for v in views.values()}
        if len(leaders) == 1 and None not in leaders:
            leader = cluster.node(leaders.pop())
            if views[leader.node_id]["state"] == "leader":
                return leader
        time.sleep(0.1)
    raise AssertionError("the running members agree on no leader")


@pytest.fixture
def network() -> Iterator[ProxyNetwork]:
    proxies = ProxyNetwork()
    try:
        yield proxies
    finally:
        proxies.close()


@pytest.fixture
def cluster(tmp_path: Path, network: ProxyNetwork) -> Iterator[LocalCluster]:
    # Raft ports above every proxy port (see amber.chaos.proxy).
    base = free_base_port(4, low=30_000, high=32_700)
    c = LocalCluster(tmp_path / "cluster", 3, base_port=base, peer_address=network.peer_address)
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


class OrderedWriter:
    """One raw connection pipelining increasing values to one key, without waiting.

    redis-py's pipelines wait for every reply before the next one is sent, so
    at most one batch of the connection would be in flight; here a thread
    sends while another reads, with at most ``WINDOW`` writes unanswered.
    """

    WINDOW = 400

    def __init__(self, node: LocalNode, key: str) -> None:
        self.sock = socket.create_connection((node.host, node.resp_port), timeout=20)
        self.key = key.encode()
        self.acked: list[int] = []
        self.failed: list[str] = []
        self.sent = 0
        self.answered = 0
        self.stop = threading.Event()
        self.room = threading.Semaphore(self.WINDOW)
        self.threads = [
            threading.Thread(target=self.send, name="ordered-writer-send"),
            threading.Thread(target=self.read, name="ordered-writer-read"),
        ]

    def command(self, value: int) -> bytes:
        text = str(value).encode()
        return b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(self.key), self.key, len(text), text,
        )  # fmt: skip

    def send(self) -> None:
        for _ in range(1_000_000):  # bounded; stopped long before
            if self.stop.is_set():
                return
            chunk = []
            for _ in range(BATCH):
                if not self.room.acquire(timeout=0.1):
                    break
                self.sent += 1
                chunk.append(self.command(self.sent))
            try:
                self.sock.sendall(b"".join(chunk))
            except OSError as exc:
                self.failed.append(f"send: {exc}")
                return

    def read(self) -> None:
        stream = self.sock.makefile("rb")
        try:
            while not (self.stop.is_set() and self.answered >= self.sent):
                line = stream.readline()
                if not line:
                    self.failed.append("the connection closed")
                    return
                self.answered += 1
                if line.startswith(b"+OK"):
                    self.acked.append(self.answered)
                else:
                    self.failed.append(f"{self.answered}: {line.strip().decode()}")
                self.room.release()
        except OSError as exc:
            self.failed.append(f"read: {exc}")

    def __enter__(self) -> OrderedWriter:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)
        self.sock.close()


def applied_values(node: LocalNode, table: str, key: str, start: int) -> list[int]:
    """The values ``table:key`` took from revision ``start``, in apply order, up to ``"end"``."""
    pubsub = client(node).pubsub()
    try:
        pubsub.execute_command("AMBER.WATCH", f"{table}:{key}", "FROM", str(start))
        values: list[int] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            event = pubsub.parse_response(block=False, timeout=1.0)
            if not event or event[0] != b"amber.watch" or len(event) < 6:
                continue
            value = json.loads(event[5])
            if value == "end":
                return values
            values.append(int(value))
        raise AssertionError(f"the watch of {table}:{key} did not reach the end marker")
    finally:
        pubsub.close()


def cut_round(
    cluster: LocalCluster, network: ProxyNetwork, round_: int, cut: float
) -> tuple[OrderedWriter, int]:
    """Write to the leader while it is cut off and reconnected; returns the writer, start rev."""
    leader = wait_leader(cluster)
    start = int(client(leader).execute_command("AMBER.REV")) + 1
    others = [n.node_id for n in cluster.nodes if n is not leader]
    with OrderedWriter(leader, f"o:k{round_}") as writer:
        time.sleep(0.3)
        network.partition([[leader.node_id], others])
        try:
            time.sleep(cut)  # the others elect a leader meanwhile
        finally:
            network.heal()
        time.sleep(1.5)  # the old leader's discarded entries are retried meanwhile
    client(wait_leader(cluster)).set(f"o:k{round_}", "end")
    return writer, start


def check_round(cluster: LocalCluster, round_: int, writer: OrderedWriter, start: int) -> None:
    reader = wait_leader(cluster)
    values = applied_values(reader, "o", f"k{round_}", start)
    out_of_order = [(a, b) for a, b in itertools.pairwise(values) if b <= a]
    assert not out_of_order, (
        f"round {round_}: writes of one connection applied out of order or twice "
        f"(first pairs {out_of_order[:5]}; {len(writer.acked)} acked, failures "
        f"{writer.failed[:3]})"
    )
    lost = sorted(set(writer.acked) - set(values))
    assert not lost, f"round {round_}: acknowledged writes lost: {lost[:10]}"
    assert writer.acked, f"round {round_}: no write was acknowledged: {writer.failed[:3]}"


def test_one_connection_keeps_its_order_while_the_leader_is_cut_off(
    cluster: LocalCluster, network: ProxyNetwork
):
    for round_ in range(3):
        writer, start = cut_round(cluster, network, round_, cut=2.0)
        check_round(cluster, round_, writer, start)


@pytest.mark.slow
def test_one_connection_keeps_its_order_over_many_leader_changes(
    cluster: LocalCluster, network: ProxyNetwork
):
    for round_ in range(20):
        writer, start = cut_round(cluster, network, round_, cut=1.0 + (round_ % 4) * 0.5)
        check_round(cluster, round_, writer, start)


# -- the apply side, deterministically -----------------------------------------------------


def _send(db: amber.Database, value: int, origin: tuple[bytes, int]) -> Any:
    """One entry ``put o:k value`` with a chosen origin and seq, through Raft; what apply said."""
    record = stamp(now_ms(), encode_body(Batch((Put("o", "k", value),))))
    done = threading.Event()
    answer: list[tuple[Any, int]] = []

    def callback(result: Any, error: int) -> None:
        answer.append((result, error))
        done.set()

    db._node.replicator._engine.amber_apply([record], origin, callback=callback)
    assert done.wait(20), "the entry was not answered"
    result, error = answer[0]
    assert error == 0, f"raft error {error}"
    return "applied" if isinstance(result, list) else result


def test_an_origins_entries_apply_in_seq_order_and_once_on_every_member(tmp_path: Path):
    dbs = open_trio(tmp_path)
    try:
        origin = b"origin-1"
        # Sent through the second member: it forwards them to the leader.
        assert _send(dbs[1], 2, (origin, 2)) == "gap"  # seq 1 is missing: skipped
        assert _send(dbs[1], 1, (origin, 1)) == "applied"
        assert _send(dbs[1], 10, (origin, 1)) == "duplicate"  # a second copy of seq 1
        assert _send(dbs[1], 2, (origin, 2)) == "applied"
        assert _send(dbs[1], 3, (origin, 4)) == "gap"
        for db in dbs:
            db.barrier()
            entry = db.table("o").entry("k")
            assert entry is not None and (entry.value, entry.version) == (2, 2), db
            assert db._node.replicator._origins[origin] == 2
        assert len({db.revision for db in dbs}) == 1
    finally:
        for db in dbs:
            db.close()


def test_the_origin_table_is_in_snapshots_and_survives_a_restart(tmp_path: Path):
    dbs = open_trio(tmp_path, compaction_entries=1_000_000)
    try:
        origin = b"origin-2"
        for seq in (1, 2, 3):
            assert _send(dbs[0], seq, (origin, seq)) == "applied"
        dbs[2].barrier()
        snapshot = tmp_path / "n3" / "raft" / "snapshot.amber"
        dbs[2]._node.snapshot()
        journal = dbs[2]._node.replicator.journal
        deadline = time.monotonic() + 20
        while journal.stats()["entries"] > 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # compacted once the snapshot file is durable
        assert snapshot.exists() and journal.stats()["entries"] <= 2
        config = dbs[2]._node.replicator.cluster
        dbs[2].close()
        # The journal no longer holds the entries: the table can only come from the snapshot.
        dbs[2] = amber.open_cluster(tmp_path / "n3", config, jobs=False)
        assert dbs[2]._node.replicator._origins[origin] == 3
        assert _send(dbs[2], 99, (origin, 3)) == "duplicate"
        assert _send(dbs[2], 4, (origin, 4)) == "applied"
        for db in dbs:
            db.barrier()
            assert db.table("o").get("k") == 4
    finally:
        for db in dbs:
            db.close()


def _second_write_lands_last(dbs: list[Any], node: Any) -> None:
    """Two writes of ``node`` to one key apply in the order sent, on every member."""
    first = node.submit(Batch((Put("o", "k", 1),)))
    second = node.submit(Batch((Put("o", "k", 2),)))
    node.replicator._wait(first)
    node.replicator._wait(second)
    assert first.result is not None and second.result is not None
    assert first.result.revision < second.result.revision
    for db in dbs:
        db.barrier()
        entry = db.table("o").entry("k")
        assert entry is not None and (entry.value, entry.version) == (2, 2), db


def test_a_write_whose_entry_was_discarded_still_precedes_the_later_ones(tmp_path: Path):
    dbs = open_trio(tmp_path)
    try:
        node = dbs[1]._node
        real = node.replicator._engine.amber_apply
        lost: list[list[bytes]] = []

        def flaky(records: list[bytes], *args: Any, callback: Any) -> None:
            """The first entry of writes never reaches the log: reported as replaced, later."""
            if records and not lost:
                lost.append(records)
                timer = threading.Timer(0.5, callback, (None, FAIL_REASON.DISCARDED))
                timer.daemon = True
                timer.start()
                return
            real(records, *args, callback=callback)

        node.replicator._engine.amber_apply = flaky
        _second_write_lands_last(dbs, node)  # the second's entry commits before the retry
        assert lost
    finally:
        for db in dbs:
            db.close()


def test_an_entry_pysyncobj_never_answers_is_sent_again_and_keeps_its_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("amber.replication.cluster.RESEND_AFTER", 0.3)
    dbs = open_trio(tmp_path)
    try:
        node = dbs[0]._node
        real = node.replicator._engine.amber_apply
        lost: list[list[bytes]] = []

        def lossy(records: list[bytes], *args: Any, callback: Any) -> None:
            """The first entry of writes vanishes: no log entry, no answer."""
            if records and not lost:
                lost.append(records)
                return
            real(records, *args, callback=callback)

        node.replicator._engine.amber_apply = lossy
        _second_write_lands_last(dbs, node)  # the second is skipped for the gap until then
        assert lost
    finally:
        for db in dbs:
            db.close()


def test_a_barrier_pysyncobj_never_answers_is_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("amber.replication.cluster.RESEND_AFTER", 0.3)
    dbs = open_trio(tmp_path)
    try:
        node = dbs[2]._node
        real = node.replicator._engine.amber_apply
        lost: list[int] = []

        def lossy(records: list[bytes], *args: Any, callback: Any) -> None:
            """The first two barrier-only entries vanish: no log entry, no answer."""
            if not records and len(lost) < 2:
                lost.append(1)
                return
            real(records, *args, callback=callback)

        node.replicator._engine.amber_apply = lossy
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:  # two lost: every place of the window
            list(pool.map(lambda _: dbs[2].barrier(), range(2)))
        assert len(lost) == 2 and time.monotonic() - started < node.replicator.cluster.timeout_s
        dbs[2].table("o").put("k", 1)  # the window is free again
        assert dbs[2].table("o").get("k") == 1
    finally:
        for db in dbs:
            db.close()
