# mypy: disable-error-code="no-untyped-call"
"""The workload of a chaos run: register and set clients, and one watch per node.

**Registers.** Keys ``r:k0`` … ``r:k{n-1}``; each client thread (a Jepsen
*process*) loops: ``read`` (``GET``: linearizable in a cluster, every read
waits for a Raft log barrier), ``write`` (``SET`` of a value unique in the
run) or ``cas`` (``AMBER.TXN`` with a ``value`` compare on the value this
client last saw for the key, and a put of a fresh unique value). Values
travel as decimal strings (``SET`` stores a JSON string, and the cas puts a
string too, so the compare sees the same kind), and are recorded as ints.
History keys are the wire keys (``r:k3``).

**Set.** ``add`` of a unique element ``e`` is ``SET s:e<e> 1``; the final
``read-set`` is ``KEYS s:*`` (one barriered read). History key ``s``.

**Watches.** :class:`NodeWatch` holds ``AMBER.WATCH * FROM 1`` on one node
and, whenever the connection drops (the node was killed, paused past the
timeout, or restarted), resumes ``FROM`` the last revision it saw and skips
the events of that revision it already has, so the stream stays gap-free.
A ``COMPACTED`` answer ends the stream and is recorded. On a sharded node
it watches its own group (``LOCAL``) or every group merged (see the class).

**Shards.** Given the Raft groups (``groups``), a client routes like a
Redis Cluster client: it remembers which group serves a key's slot, learnt
from ``MOVED`` replies, and sends there (to any member of the group:
followers forward). A ``MOVED`` reply means the command was not applied, so
the client re-sends it within the same operation (one invoke, one
completion), at most :data:`MAX_HOPS` times. ``AMBER.TXN`` names no key in
its arguments, so a server never answers it ``MOVED``: sent to the wrong
group its compare fails (``CONDITION``, nothing applied) — the route learnt
from the key's reads and writes sends it to the right one.

Each client sends one operation at a time (``rate`` per second at most)
with a short socket timeout; :func:`~amber.chaos.wire.outcome` decides
``fail`` or ``info`` on errors. Every loop stops at a deadline.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..cluster.slots import key_slot
from ..replication.local import LocalNode
from .history import Function, HistoryWriter, Record, RecordType
from .wire import error_code, outcome, resp_client

__all__ = [
    "MAX_HOPS",
    "SET_KEY",
    "NodeWatch",
    "Recorder",
    "RegisterClient",
    "decode_value",
    "read_set",
    "register_key",
]

SET_KEY = "s"
#: ``MOVED`` redirects one operation follows before it gives up (``fail``).
MAX_HOPS = 3


def register_key(i: int) -> str:
    """The wire (and history) key of register ``i``."""
    return f"r:k{i}"


class Recorder:
    """The run's history, in observed order, on one clock; thread-safe."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.origin = clock()
        self.records: list[Record] = []
        self.errors: Counter[str] = Counter()
        self._writer = HistoryWriter(path, append=False) if path is not None else None
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the run started."""
        return self.clock() - self.origin

    def add(self, process: int, kind: RecordType, f: Function, key: str, value: Any) -> None:
        with self._lock:
            record = Record(process, kind, f, key, value, round(self.now(), 6))
            self.records.append(record)
            if self._writer is not None:
                self._writer.append(record)

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()


def decode_value(raw: Any) -> Any:
    """A register's value as recorded: the int the workload wrote (None if absent)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    try:
        return int(text)
    except ValueError:
        return text  # not a value the workload wrote: the checkers will say so


class ChaosClient(threading.Thread):
    """One process (Jepsen's word): ``_one`` operation after another, at most ``rate`` a
    second, until ``deadline``, ``max_ops`` or ``stop``. A failed operation makes the
    next go to another member (``hops``), as a cluster-aware client would."""

    #: Names the thread and seeds the process's random choices (replays repeat them).
    kind = "client"

    def __init__(
        self,
        process: int,
        members: Callable[[], list[LocalNode]],
        recorder: Recorder,
        *,
        keys: int,
        seed: int,
        deadline: float,
        rate: float = 10.0,
        timeout: float = 2.5,
        max_ops: int = 100_000,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(name=f"chaos-{self.kind}-{process}", daemon=True)
        self.process = process
        self.members = members
        self.recorder = recorder
        self.keys = keys
        self.rng = random.Random(f"{seed}-{self.kind}-{process}")
        self.deadline = deadline
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.timeout = timeout
        self.max_ops = max_ops
        self.stop_event = stop or threading.Event()
        self.hops = 0
        self.ops = 0
        self._counter = 0
        self._clients: dict[int, redis.Redis] = {}

    def _unique(self) -> int:
        """A value no other write of the run has."""
        self._counter += 1
        return self.process * 10_000_000 + self._counter

    def run(self) -> None:
        try:
            while (
                not self.stop_event.is_set()
                and time.monotonic() < self.deadline
                and self.ops < self.max_ops
            ):
                began = time.monotonic()
                ok = self._one()
                self.ops += 1
                pause = self.interval - (time.monotonic() - began)
                if not ok:
                    self.hops += 1  # try another member next, as a cluster-aware client would
                    pause = max(pause, 0.05)
                if pause > 0:
                    self.stop_event.wait(pause * self.rng.uniform(0.5, 1.5))
        finally:
            for client in self._clients.values():
                client.close()

    def _one(self) -> bool:
        """One operation, recorded; False if it failed."""
        raise NotImplementedError


class RegisterClient(ChaosClient):
    """One process: random read / write / cas / add operations until ``deadline``."""

    def __init__(
        self,
        *args: Any,
        groups: Callable[[], list[list[LocalNode]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.groups = groups
        #: ``MOVED`` replies followed.
        self.redirects = 0
        #: Slot -> index of the group that last said it serves it (from ``MOVED``).
        self._route: dict[int, int] = {}
        self._seen: dict[str, int] = {}

    def _client(self, wire_key: str) -> tuple[redis.Redis, int]:
        """A client for ``wire_key``'s group if known (else any member), and its port."""
        members = self.members()
        if self.groups is not None:
            group = self._route.get(key_slot(wire_key.encode()))
            if group is not None:
                members = self.groups()[group]
        node = members[(self.process + self.hops) % len(members)]
        client = self._clients.get(node.resp_port)
        if client is None:
            client = self._clients[node.resp_port] = resp_client(node, self.timeout)
        return client, node.resp_port

    def _one(self) -> bool:
        roll = self.rng.random()
        key = register_key(self.rng.randrange(self.keys))
        if roll < 0.15:
            element = self._unique()
            wire = f"{SET_KEY}:e{element}"
            return self._do("add", SET_KEY, element, ("SET", wire, "1"), wire)
        if roll < 0.5:
            return self._do("read", key, None, ("GET", key))
        expected = self._seen.get(key)
        new = self._unique()
        if roll < 0.75 or expected is None:
            return self._do("write", key, new, ("SET", key, str(new)))
        spec = {
            "compares": [[key, "value", "=", str(expected)]],
            "ops": [["put", key, str(new)]],
        }
        return self._do("cas", key, [expected, new], ("AMBER.TXN", json.dumps(spec)))

    def _send(self, wire_key: str, command: tuple[str, ...]) -> Any:
        """Send ``command``, following ``MOVED`` (not applied) up to :data:`MAX_HOPS` times."""
        for hop in range(MAX_HOPS + 1):
            client, port = self._client(wire_key)
            try:
                reply = client.execute_command(*command)
            except redis.exceptions.MovedError as exc:
                if self.groups is None or hop == MAX_HOPS:
                    raise
                self._learn(wire_key, exc.port)
                self.redirects += 1
                continue
            if self.groups is not None:
                self._learn(wire_key, port)  # it served the key: its group owns the slot
            return reply
        raise AssertionError("unreachable")

    def _learn(self, wire_key: str, port: int) -> None:
        """Remember that the group of the member at ``port`` serves ``wire_key``'s slot."""
        assert self.groups is not None
        for index, group in enumerate(self.groups()):
            if any(n.resp_port == port for n in group):
                self._route[key_slot(wire_key.encode())] = index
                return

    def _do(
        self,
        f: Function,
        key: str,
        value: Any,
        command: tuple[str, ...],
        wire_key: str | None = None,
    ) -> bool:
        recorder = self.recorder
        recorder.add(self.process, "invoke", f, key, value)
        try:
            reply = self._send(wire_key or key, command)
        except (redis.RedisError, OSError) as exc:
            kind = outcome(f, exc)
            recorder.error(f"{f}:{error_code(exc)}")
            recorder.add(self.process, kind, f, key, value)
            if f == "cas" and error_code(exc) == "CONDITION":
                self._seen.pop(key, None)  # what we expected is gone: read again
                return True
            return False
        if f == "read":
            result = decode_value(reply)
            if isinstance(result, int):
                self._seen[key] = result
            recorder.add(self.process, "ok", f, key, result)
            return True
        if f in ("write", "cas"):
            self._seen[key] = value if f == "write" else value[1]
        recorder.add(self.process, "ok", f, key, value)
        return True


def read_set(client: redis.Redis) -> list[int]:
    """The set's elements, from ``KEYS s:*``."""
    keys = client.execute_command("KEYS", f"{SET_KEY}:*")
    elements = []
    for raw in keys:
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        _, _, element = name.partition(":e")
        elements.append(int(element))
    return sorted(elements)


class NodeWatch(threading.Thread):
    """``AMBER.WATCH * FROM 1`` on one node, resumed across drops; see the module doc.

    On a sharded node ``scope`` says which stream: ``local`` (``LOCAL``: the
    node's own group, with its revisions) or ``merged`` (every group's, each
    event tagged with its group; resumed with a cursor naming each of
    ``groups``). Revisions and the events already seen are tracked per group
    (``""`` when there is one stream of one group).
    """

    def __init__(
        self,
        node: LocalNode,
        *,
        stop: threading.Event,
        deadline: float,
        scope: Literal["all", "local", "merged"] = "all",
        groups: Sequence[str] = (),
    ) -> None:
        suffix = "" if scope == "all" else f"-{scope}"
        super().__init__(name=f"chaos-watch-{node.node_id}{suffix}", daemon=True)
        self.node = node
        self.stop_event = stop
        self.deadline = deadline
        self.scope = scope
        self.groups = list(groups)
        self.events: list[dict[str, Any]] = []
        self.compacted: str | None = None
        self.reconnects = 0
        #: Per group: the last revision seen, and how many of its events.
        self.lasts: dict[str, int] = {}
        self._seen_at_last: dict[str, int] = {}
        self.last_event_at = time.monotonic()

    @property
    def last(self) -> int:
        """The last revision seen (of the one group of a non-merged stream)."""
        return self.lasts.get("", 0)

    def run(self) -> None:
        conn: redis.Connection | None = None
        skip: dict[str, int] = {}
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            if conn is None:
                try:
                    conn = self._open()
                except redis.ResponseError as exc:
                    if error_code(exc) == "COMPACTED":
                        self.compacted = str(exc)
                        return
                    self.stop_event.wait(0.3)
                    continue
                except (redis.RedisError, OSError):
                    self.stop_event.wait(0.3)
                    continue
                skip = dict(self._seen_at_last)
            try:
                if not conn.can_read(timeout=0.3):
                    continue
                message = conn.read_response(push_request=True)
            except (redis.RedisError, OSError):
                conn.disconnect()
                conn = None
                self.reconnects += 1
                continue
            if isinstance(message, redis.ResponseError):
                conn.disconnect()
                conn = None
                continue
            if not isinstance(message, list) or not message:
                continue
            if message[0] == b"amber.watch" and len(message) >= 7:
                group = message[7].decode() if self.scope == "merged" else ""
                revision = int(message[2])
                last = self.lasts.get(group, 0)
                if revision < last:
                    continue
                if revision == last and skip.get(group, 0) > 0:
                    skip[group] -= 1
                    continue
                self._accept(group, revision, message)
            elif message[0] == b"amber.watch.error":
                text = message[2].decode("utf-8", "replace") if len(message) > 2 else ""
                if text.startswith("Compacted"):
                    self.compacted = text
                    conn.disconnect()
                    return
                conn.disconnect()  # Lagged, Closed: resume from where we are
                conn = None
        if conn is not None:
            conn.disconnect()

    def _start(self) -> tuple[str, ...]:
        """``FROM`` the last revision seen (its events already seen are skipped)."""
        if self.scope == "merged":
            cursor = ",".join(f"{g}:{max(self.lasts.get(g, 0), 1)}" for g in self.groups)
            return ("FROM", cursor)
        return ("FROM", str(max(self.last, 1)), *(("LOCAL",) if self.scope == "local" else ()))

    def _open(self) -> redis.Connection:
        conn = redis.Connection(
            host=self.node.host,
            port=self.node.resp_port,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        conn.connect()
        try:
            conn.send_command("AMBER.WATCH", "*", *self._start())
            reply = conn.read_response(push_request=True)
        except BaseException:
            conn.disconnect()
            raise
        if isinstance(reply, redis.ResponseError):
            conn.disconnect()
            raise reply
        return conn

    def _accept(self, group: str, revision: int, message: list[Any]) -> None:
        if revision != self.lasts.get(group, 0):
            self.lasts[group], self._seen_at_last[group] = revision, 0
        self._seen_at_last[group] += 1
        name = message[3].decode()
        table, sep, key = name.partition(":")
        if not sep:
            table, key = "default", name
        raw = message[5]
        event = {
            "revision": revision,
            "table": table,
            "key": key,
            "type": message[4].decode(),
            "value": None if raw is None else json.loads(raw),
        }
        if group:
            event["group"] = group
        self.events.append(event)
        self.last_event_at = time.monotonic()
