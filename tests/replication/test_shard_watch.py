"""Watches across shards (#14): 2 Raft groups x 3 real processes, with a password.

A watch on one node delivers both groups' changes merged, each event naming
its group and the shard cursor that resumes after it; a resume from a cursor
gives exactly the rest; an upstream member killed (the link moves to the
next member of its group while writes go on) and restarted loses and
repeats nothing. RESP (AMBER.WATCH, a watch channel) and SSE through httpx.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hiredis
import httpx
import pytest
import redis
from cluster_support import plain

import amber
from amber.cluster.slots import Member, key_slot, split_slots
from amber.errors import InvalidArgument
from amber.replication.local import LocalCluster, LocalNode, free_base_port
from amber.server.commands.watch_channels import parse_watch_channel
from amber.server.shard_watch import (
    QUEUE_BATCHES,
    ShardLagged,
    ShardWatches,
    format_cursor,
    parse_cursor,
    parse_start,
)

PASSWORD = "shard-watch-secret"
DEADLINE_S = 20.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root: Path = tmp_path_factory.mktemp("shard-watch")
    secret = root / "requirepass"
    secret.write_text(PASSWORD + "\n")
    c = LocalCluster(
        root / "cluster",
        6,
        base_port=free_base_port(7),
        redis_cluster=True,
        shards=2,
        extra_args=["--requirepass-file", str(secret)],
    )
    c.start_all()
    try:
        yield c
    finally:
        c.stop_all()


def keys_of(table: str, group: int, count: int) -> list[str]:
    """``count`` keys of ``table`` whose slots group ``group`` (0 or 1) owns."""
    first, last = split_slots(2)[group]
    keys = (f"k{i}" for i in range(10_000))
    return [k for k in keys if first <= key_slot(f"{table}:{k}".encode()) <= last][:count]


def write(cluster: LocalCluster, table: str, group: int, key: str, value: Any) -> None:
    """JSON.SET on a running member of the group (a follower forwards it), retried
    while the group elects a leader."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        member = next(n for n in cluster.groups()[group] if n.running)
        try:
            assert plain(member, password=PASSWORD).execute_command(
                "JSON.SET", f"{table}:{key}", "$", json.dumps(value)
            )
            return
        except (redis.ConnectionError, redis.ResponseError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class RespWatch:
    """One AMBER.WATCH connection (RESP2, subscribed mode), read with hiredis."""

    def __init__(self, node: LocalNode, *args: Any) -> None:
        self.sock = socket.create_connection((node.host, node.resp_port), timeout=DEADLINE_S)
        self.reader = hiredis.Reader()
        self.send("AUTH", PASSWORD)
        assert self.read() == b"OK"
        self.send("AMBER.WATCH", *args)
        reply = self.read()
        assert reply[0] == b"amber.watch", reply

    def send(self, *args: Any) -> None:
        parts = [str(a).encode() for a in args]
        self.sock.sendall(
            b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
        )

    def read(self) -> Any:
        while (item := self.reader.gets()) is False:
            data = self.sock.recv(65536)
            assert data, "the server closed the watch"
            self.reader.feed(data)
        return item

    def take(self, count: int) -> list[list[Any]]:
        """The next ``count`` events: ``[rev, key, type, value, diff, shard, cursor]``."""
        events = []
        deadline = time.monotonic() + DEADLINE_S
        while len(events) < count and time.monotonic() < deadline:
            message = self.read()
            assert message[0] == b"amber.watch", message
            assert len(message) == 9, message  # 7 fields, then shard and cursor
            rev, key, kind, value, diff, shard, cursor = message[2:]
            events.append(
                [rev, key.decode(), kind.decode(), json.loads(value), json.loads(diff),
                 shard.decode(), cursor.decode()]
            )  # fmt: skip
        assert len(events) == count, events
        return events

    def close(self) -> None:
        self.sock.close()


def per_shard(events: list[list[Any]]) -> dict[str, list[tuple[int, str, Any]]]:
    """Each group's events in order, as (revision, key, value)."""
    out: dict[str, list[tuple[int, str, Any]]] = {}
    for event in events:
        out.setdefault(event[5], []).append((event[0], event[1], event[3]))
    return out


def test_resp_watch_merges_groups_and_resumes_from_a_cursor(cluster: LocalCluster) -> None:
    table = "merge"
    watcher = RespWatch(cluster.nodes[0], f"{table}:*", "FROM", 1)
    try:
        written = []
        for group in (0, 1):
            for key in keys_of(table, group, 3):
                write(cluster, table, group, key, {"n": 1, "g": group})
                write(cluster, table, group, key, {"n": 2, "g": group})
                written.append((group, key))
        events = watcher.take(12)
    finally:
        watcher.close()
    shards = per_shard(events)
    assert set(shards) == {"g1", "g2"}
    for group, name in ((0, "g1"), (1, "g2")):
        revisions = [rev for rev, _, _ in shards[name]]
        assert revisions == sorted(set(revisions))  # revision order, no duplicate
        mine = [key for g, key in written if g == group]
        assert [key for _, key, _ in shards[name]] == [f"{table}:{k}" for k in mine for _ in "ab"]
    # Diffs as normal watch events: the second write changes only "n".
    seconds = [e for e in events if e[3]["n"] == 2]
    assert all(e[4] == {"n": 2} and e[2] == "put" for e in seconds)
    firsts = [e for e in events if e[3]["n"] == 1]
    assert all(e[4] == e[3] for e in firsts)
    # Every cursor names both groups; resuming after event 5 gives exactly the rest.
    cut = 5
    cursor = events[cut - 1][6]
    assert sorted(part.partition(":")[0] for part in cursor.split(",")) == ["g1", "g2"]
    resumed = RespWatch(cluster.nodes[0], f"{table}:*", "FROM", cursor)
    try:
        rest = resumed.take(len(events) - cut)
    finally:
        resumed.close()
    assert per_shard(rest) == per_shard(events[cut:])


def test_upstream_member_killed_and_restarted_loses_and_repeats_nothing(
    cluster: LocalCluster,
) -> None:
    table = "restart"
    local, upstream = cluster.nodes[0], cluster.groups()[1][0]
    watcher = RespWatch(local, f"{table}:*", "FROM", 1)
    keys = keys_of(table, 1, 15)
    mine = keys_of(table, 0, 2)
    try:
        for i, key in enumerate(keys[:5]):
            write(cluster, table, 1, key, {"i": i})
        seen = watcher.take(2)  # the link (to the group's first member) streams
        cluster.kill(upstream)
        # The group goes on without it; the link moves to the next member.
        for i, key in enumerate(keys[5:10], 5):
            write(cluster, table, 1, key, {"i": i})
        write(cluster, table, 0, mine[0], {"i": 0})
        seen += watcher.take(5 + 5 + 1 - 2)
        cluster.start(upstream)
        for i, key in enumerate(keys[10:], 10):
            write(cluster, table, 1, key, {"i": i})
        write(cluster, table, 0, mine[1], {"i": 1})
        seen += watcher.take(5 + 1)
    finally:
        watcher.close()
    shards = per_shard(seen)
    assert [key for _, key, _ in shards["g2"]] == [f"{table}:{k}" for k in keys]
    revisions = [rev for rev, _, _ in shards["g2"]]
    assert revisions == sorted(set(revisions))
    assert [key for _, key, _ in shards["g1"]] == [f"{table}:{k}" for k in mine]


def test_watch_channel_carries_shard_and_cursor(cluster: LocalCluster) -> None:
    table = "channel"
    client = plain(cluster.nodes[1], password=PASSWORD)
    pubsub = client.pubsub()
    try:
        pubsub.subscribe(f"__amber_watch__@1:{table}:*")
        for group in (0, 1):
            write(cluster, table, group, keys_of(table, group, 1)[0], {"g": group})
        payloads = []
        deadline = time.monotonic() + DEADLINE_S
        while len(payloads) < 2 and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                payloads.append(json.loads(message["data"]))
        assert sorted(p["shard"] for p in payloads) == ["g1", "g2"]
        assert all(set(p["cursor"].split(",")) and p["diff"] == p["value"] for p in payloads)
        # The channel form of a cursor resumes after the first payload.
        pubsub.unsubscribe()
        pubsub.subscribe(f"__amber_watch__@{payloads[0]['cursor']}:{table}:*")
        rest = None
        while rest is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=1.0)
            if message is not None and message["type"] == "message":
                rest = json.loads(message["data"])
        assert rest is not None and rest == payloads[1]
    finally:
        pubsub.close()


def sse_events(stream: httpx.Response, count: int) -> list[tuple[str | None, dict[str, Any]]]:
    """The next ``count`` change events as (id, data); progress events are skipped."""
    events: list[tuple[str | None, dict[str, Any]]] = []
    fields: dict[str, str] = {}
    for line in stream.iter_lines():
        if line:
            name, _, value = line.partition(": ")
            fields[name] = value
            continue
        if "data" in fields and fields.get("event") is None:
            events.append((fields.get("id"), json.loads(fields["data"])))
            if len(events) == count:
                break
        fields = {}
    return events


def test_sse_merges_groups_and_resumes_with_last_event_id(cluster: LocalCluster) -> None:
    table = "sse"
    node = cluster.nodes[0]
    url = f"http://{node.host}:{node.http_port}/v1/watch"
    headers = {"Authorization": f"Bearer {PASSWORD}"}
    for group in (0, 1):
        for key in keys_of(table, group, 2):
            write(cluster, table, group, key, {"g": group})
    with httpx.Client(timeout=DEADLINE_S, headers=headers) as http:
        params = {"table": table, "from": "1", "heartbeat": "0.5"}
        with http.stream("GET", url, params=params) as stream:
            assert stream.status_code == 200, stream.read()
            events = sse_events(stream, 4)
        assert sorted(e["shard"] for _, e in events) == ["g1", "g1", "g2", "g2"]
        assert all(cursor is not None and "g1:" in cursor for cursor, _ in events)
        cursor = events[1][0]
        assert cursor is not None
        with http.stream("GET", url, params=params, headers={"Last-Event-ID": cursor}) as stream:
            rest = sse_events(stream, 2)
        assert rest == events[2:]
        with http.stream("GET", url, params={"table": table, "from": cursor}) as stream:
            assert sse_events(stream, 2) == events[2:]
        bad = http.get(url, params={"table": table, "from": "g1:x"})
        assert bad.status_code == 400


# -- in-process: the cursor and the bounds ---------------------------------------------


def test_cursor_text_forms() -> None:
    assert parse_cursor("g2:99,g1:121") == {"g2": 99, "g1": 121}
    assert format_cursor({"g2": 99, "g1": 121}) == "g1:121,g2:99"
    assert parse_start("7") == 7 and parse_start("g1:3") == {"g1": 3}
    for bad in ("g1:0", "g1:x", "1g:3", "g1:3,g1:4", "g1", ""):
        with pytest.raises(InvalidArgument):
            parse_start(bad) if ":" not in bad else parse_cursor(bad)
    # A channel's start: a revision (table "7" here) or a cursor, then the spec.
    assert parse_watch_channel(b"__amber_watch__@5:7:*") == (b"7:*", 5)
    assert parse_watch_channel(b"__amber_watch__@g1:5,g2:6:t:123") == (b"t:123", {"g1": 5, "g2": 6})


class _View:
    """A shard view whose other group listens nowhere (its links keep retrying)."""

    group = "g1"

    def __init__(self, port: int) -> None:
        self.port = port

    def status(self) -> dict[str, Any]:
        return {}

    def slot_map(self, status: dict[str, Any]) -> Any:
        members = {"g1": (), "g2": (Member("n2", "127.0.0.1", self.port, "master"),)}
        return type("Map", (), {"groups": members})()


def test_a_slow_consumer_ends_with_the_cursor_to_resume(tmp_path: Path) -> None:
    """The merged queue is bounded: unread, this node's watch overflows into lagged."""
    db = amber.open(tmp_path / "db", config=amber.Config(watch_queue=5))

    async def scenario() -> None:
        shards = ShardWatches(db, _View(free_base_port(1)), lambda: None)
        merged = shards.open("t", None, None, start={"g1": 1, "g2": 4}, prev_value=False)
        try:
            table = db.table("t")
            for i in range(QUEUE_BATCHES + 20):
                table.put(f"k{i}", {"i": i})
                await asyncio.sleep(0.01)  # the local pump moves what fits in the queue
            got = []
            with pytest.raises(ShardLagged) as lagged:
                for _ in range(QUEUE_BATCHES + 20):
                    batch = await merged.next(timeout=5)
                    assert batch is not None
                    got.append(batch)
            assert len(got) >= QUEUE_BATCHES
            assert lagged.value.cursor == got[-1].after == f"g1:{got[-1].revision + 1},g2:4"
        finally:
            merged.close()

    try:
        asyncio.run(scenario())
    finally:
        db.close()
