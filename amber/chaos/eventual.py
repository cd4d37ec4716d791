# mypy: disable-error-code="no-untyped-call"
"""``amber chaos --workload eventual``: an eventual (last-writer-wins) table under faults.

A run, step by step (every step bounded in time):

1. start a :class:`~amber.replication.local.LocalCluster` with
   ``--allow-clock-offset --max-clock-skew-ms`` (:data:`MAX_SKEW_MS`); with
   the ``partition`` nemesis every Raft link *and every member's RESP pull
   link to each peer* (``--cluster-resp-peers``) runs through a
   :mod:`~amber.chaos.proxy`, so a partition cuts eventual replication
   too; wait for a leader and declare table ``ev`` eventual;
2. clients (:class:`EventualClient`) send each operation to a random
   member's real RESP port — reads (``JSON.GET``), puts of ``{"put": u}``,
   merges of one top-level field ``{f: u}`` and deletes, ``u`` unique in
   the run, every write as ``AMBER.TXN`` with ``"stamps": true`` so its
   stamp is recorded — while the nemesis kills, pauses, partitions or
   skews one member's clock (``clock-skew``);
3. heal everything, then poll every member's state (``AMBER.LWW PULL``
   for the stamps, ``JSON.GET`` for what a client sees) until all are
   identical and stay so for 2 s: the time from the heal is the
   convergence time, bounded by :data:`CONVERGENCE_BOUND`;
4. stop the cluster, judge (:func:`~amber.chaos.lwwcheck.judge_eventual`),
   write ``history.jsonl``, ``eventual.json`` (the members' final states,
   for ``--recheck``), ``report.json`` and ``timeline.png``.

An eventual write must succeed on any member that runs and is not paused
— on a minority side, with no leader — so any other error is counted in
``client_errors`` and shows in the report.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from ..model import unpack
from ..replication.local import LocalCluster, LocalNode, free_base_port
from .history import Function, Record, read_history
from .lwwcheck import BASE, EventualJudgement, judge_eventual
from .nemesis import Fault, Nemesis, plan
from .proxy import ProxyNetwork
from .wire import error_code, find_leader, outcome, resp_client
from .workload import ChaosClient, Recorder

if TYPE_CHECKING:
    from .harness import ChaosOptions, ChaosRun

__all__ = [
    "CONVERGENCE_BOUND",
    "FIELDS",
    "MAX_SKEW_MS",
    "TABLE",
    "EventualClient",
    "declare_eventual",
    "member_state",
    "minority_writes",
    "recheck_eventual",
    "run_eventual",
    "wait_converged",
]

TABLE = "ev"
#: The top-level fields merges write (a put writes only ``put``).
FIELDS = ("a", "b", "c")
#: The servers' ``--max-clock-skew-ms`` in an eventual run (the clock-skew nemesis
#: gives offsets within and beyond it).
MAX_SKEW_MS = 2000
#: Seconds from the heal within which every member must hold the same state.
CONVERGENCE_BOUND = 30.0
#: Raft ports, as in the register harness (proxy addresses must compare lower).
_RAFT_PORTS = (30_000, 32_700)


def eventual_key(i: int) -> str:
    return f"{TABLE}:k{i}"


class EventualClient(ChaosClient):
    """One process: reads, puts, merges and deletes on random members until ``deadline``."""

    kind = "eventual"

    def _one(self) -> bool:
        node = self.rng.choice(self.members())
        key = eventual_key(self.rng.randrange(self.keys))
        roll = self.rng.random()
        spec: dict[str, Any] = {"node": node.node_id}
        if roll < 0.3:
            self._do(node, "read", key, spec, ("JSON.GET", key))
            return True
        if roll < 0.55:
            spec["value"] = self._unique()
            op: list[Any] = ["put", key, {BASE: spec["value"]}]
            f: Function = "put"
        elif roll < 0.85:
            spec["field"], spec["value"] = self.rng.choice(FIELDS), self._unique()
            op, f = ["merge", key, {spec["field"]: spec["value"]}], "merge"
        else:
            op, f = ["delete", key], "delete"
        txn = json.dumps({"ops": [op], "stamps": True})
        self._do(node, f, key, spec, ("AMBER.TXN", txn))
        return True  # each operation picks its member anyway: nothing to hop

    def _do(
        self, node: LocalNode, f: Function, key: str, spec: dict[str, Any], command: tuple[str, ...]
    ) -> None:
        recorder = self.recorder
        recorder.add(self.process, "invoke", f, key, spec)
        client = self._clients.get(node.resp_port)
        if client is None:
            client = self._clients[node.resp_port] = resp_client(node, self.timeout)
        try:
            reply = client.execute_command(*command)
        except (redis.RedisError, OSError) as exc:
            recorder.error(f"{f}:{error_code(exc)}@{node.node_id}")
            recorder.add(self.process, outcome(f, exc), f, key, None)
            return
        if f == "read":
            recorder.add(self.process, "ok", f, key, None if reply is None else json.loads(reply))
        else:
            recorder.add(self.process, "ok", f, key, {"stamp": reply[1][0].decode()})


def member_state(
    node: LocalNode, timeout: float = 5.0, *, table: str = TABLE, documents: bool = True
) -> dict[str, list[Any]]:
    """``{key: [document or None, {"base": stamp, "fields": {...}}]}`` of ``table`` on
    ``node``: the stamps from ``AMBER.LWW PULL`` (tombstones too), each present key's
    document from ``JSON.GET`` (what a client reads; with ``documents`` false, from the
    pull too: one round trip for the whole table, for polling many keys)."""
    client = resp_client(node, timeout)
    try:
        states: dict[str, list[Any]] = {}
        incarnation, cursor = "-", 0
        for _ in range(1000):
            reply = client.execute_command("AMBER.LWW", "PULL", "chaos", incarnation, cursor, 500)
            raw_incarnation, following, _clock, _watermark, *blobs = reply
            incarnation, cursor = raw_incarnation.decode(), int(following)
            for blob in blobs:
                name, key, present, value, base, fields, _expires = unpack(blob)
                if name == table:
                    stamps = {"base": list(base), "fields": {f: list(s) for f, s in fields.items()}}
                    states[f"{name}:{key}"] = [value if present else None, stamps]
            if not blobs:
                break
        for key, state in states.items() if documents else ():
            raw = client.execute_command("JSON.GET", key)
            state[0] = None if raw is None else json.loads(raw)
        return states
    finally:
        client.close()


def _live(states: dict[str, list[Any]]) -> dict[str, list[Any]]:
    return {k: v for k, v in states.items() if v[0] is not None}


def wait_converged(
    cluster: LocalCluster, limit: float, *, stable: float = 2.0
) -> tuple[float | None, dict[str, dict[str, list[Any]]]]:
    """Poll every member until their live states are identical and stay so for ``stable``
    seconds; the seconds that took (None: not within ``limit``) and the last states read."""
    began = time.monotonic()
    deadline = began + limit + stable
    equal_since: float | None = None
    seen: dict[str, list[Any]] | None = None
    states: dict[str, dict[str, list[Any]]] = {}
    while time.monotonic() < deadline:
        try:
            states = {n.node_id: member_state(n) for n in cluster.nodes}
        except (redis.RedisError, OSError):
            equal_since, seen = None, None
            time.sleep(0.25)
            continue
        views = [_live(s) for s in states.values()]
        if all(v == views[0] for v in views):
            if equal_since is None or views[0] != seen:
                equal_since, seen = time.monotonic(), views[0]
            elif time.monotonic() - equal_since >= stable:
                return equal_since - began, states
        else:
            equal_since, seen = None, None
        time.sleep(0.25)
    return None, states


def member_info(node: LocalNode) -> dict[str, Any]:
    """What ``AMBER.LWW STATUS`` says of clock-skew refusals and tombstones."""
    client = resp_client(node, 5.0)
    try:
        status = json.loads(client.execute_command("AMBER.LWW", "STATUS"))
    finally:
        client.close()
    return {
        # states held back for a stamp too far ahead (once each), per peer and in all
        "refused_states": sum(p["refused"] for p in status["peers"]),
        "refused_from": {p["id"]: p["refused"] for p in status["peers"]},
        # stamps the clock refused to observe, the once-a-second retries included
        "refused_stamps": int(status["clock_refused"]),
        "deferred": sum(p["deferred"] for p in status["peers"]),
        "tombstones_collected": status["tombstones_collected"],
    }


def minority_writes(records: list[Record], faults: list[dict[str, Any]], nodes: int) -> int:
    """Acknowledged writes sent to a member on the minority side of a partition while it
    was in effect."""
    windows = [
        (set(side), f["applied_at"], f["healed_at"])
        for f in faults
        if f["kind"] == "partition" and f.get("sides") and f["applied_at"] is not None
        for side in f["sides"]
        if len(side) <= nodes // 2
    ]
    invoked: dict[int, Record] = {}
    count = 0
    for record in records:
        if record.f not in ("put", "merge", "delete"):
            continue
        if record.type == "invoke":
            invoked[record.process] = record
            continue
        start = invoked.pop(record.process, None)
        if record.type != "ok" or start is None:
            continue
        node = start.value.get("node")
        if any(
            node in side and begin <= start.time and record.time <= (end or float("inf"))
            for side, begin, end in windows
        ):
            count += 1
    return count


def run_eventual(
    options: ChaosOptions,
    log: Callable[[str], None] = lambda _: None,
    *,
    faults: Sequence[Fault] | None = None,
) -> ChaosRun:
    """Run one eventual chaos round and write its files into ``options.out``; ``faults``
    replaces the seeded plan (a test that needs one fault right after another)."""
    from .harness import ChaosRun, write_report  # noqa: PLC0415 - the harness imports this module

    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "cluster", ignore_errors=True)
    timings: dict[str, float] = {}
    notes: list[str] = []
    began = time.monotonic()
    proxies = ProxyNetwork(seed=options.seed) if "partition" in options.nemesis else None
    cluster = LocalCluster(
        out / "cluster",
        options.nodes,
        base_port=free_base_port(options.nodes, low=_RAFT_PORTS[0], high=_RAFT_PORTS[1]),
        durability=options.durability,
        extra_args=["--allow-clock-offset", "--max-clock-skew-ms", str(MAX_SKEW_MS)],
        peer_address=proxies.peer_address if proxies is not None else None,
        resp_peer_address=proxies.resp_address if proxies is not None else None,
    )
    recorder = Recorder(out / "history.jsonl")
    nemesis: Nemesis | None = None
    states: dict[str, dict[str, list[Any]]] = {}
    members: dict[str, Any] = {}
    seconds: float | None = None
    try:
        cluster.start_all()
        if find_leader(cluster, cluster.nodes, timeout=30) is None:
            raise RuntimeError("the cluster elected no leader within 30 s")
        declare_eventual(cluster.nodes[0])
        timings["startup"] = time.monotonic() - began
        log(f"cluster of {options.nodes} up in {timings['startup']:.1f}s; eventual workload")
        workload_end = time.monotonic() + options.seconds
        recorder.origin = time.monotonic()
        clients = [
            EventualClient(
                p,
                lambda: cluster.nodes,
                recorder,
                keys=options.keys,
                seed=options.seed,
                deadline=workload_end,
                rate=options.rate,
                timeout=options.op_timeout,
            )
            for p in range(options.clients)
        ]
        if faults is None:
            faults = plan(options.seed, options.seconds, options.nemesis, options.nodes)
        nemesis = Nemesis(
            cluster, proxies, faults, recorder.now, log, max_clock_skew_ms=MAX_SKEW_MS
        )
        for client in clients:
            client.start()
        nemesis.start()
        for client in clients:
            client.join(max(0.0, workload_end - time.monotonic()) + options.op_timeout + 5)
        nemesis.stop()
        nemesis.heal_all()
        notes.extend(nemesis.notes)
        timings["workload"] = healed = recorder.now()
        seconds, states = wait_converged(cluster, CONVERGENCE_BOUND)
        timings["convergence"] = -1.0 if seconds is None else seconds
        ends = [r.end for r in nemesis.records if r.end is not None and r.injected]
        if seconds is not None and ends:
            # from the last fault's heal: includes the writes made until the clients stopped
            timings["convergence_after_last_fault"] = healed + seconds - max(ends)
        for node in cluster.nodes:
            try:
                members[node.node_id] = member_info(node) | {
                    "keys": len(_live(states[node.node_id]))
                }
            except (redis.RedisError, OSError, KeyError) as exc:
                notes.append(f"no AMBER.LWW STATUS from {node.node_id}: {exc}")
    finally:
        if nemesis is not None:
            nemesis.stop(5)
        cluster.stop_all()
        if proxies is not None:
            proxies.close()
        recorder.close()
    document = {
        "seconds": seconds,
        "bound": CONVERGENCE_BOUND,
        "members": members,
        "states": states,
    }
    (out / "eventual.json").write_text(json.dumps(document, separators=(",", ":")) + "\n")
    checked = time.monotonic()
    judgement = judge_eventual(
        recorder.records, states, seconds, bound=CONVERGENCE_BOUND, members=members
    )
    timings["check"] = time.monotonic() - checked
    timings["total"] = time.monotonic() - began
    faults_json = [r.to_json() for r in nemesis.records] if nemesis is not None else []
    result = ChaosRun(
        options,
        judgement,
        recorder.records,
        faults_json,
        timings,
        notes,
        dict(sorted(recorder.errors.items())),
    )
    result.extra["minority_writes"] = minority_writes(recorder.records, faults_json, options.nodes)
    return write_report(result, out, "amber chaos eventual")


def declare_eventual(node: LocalNode, table: str = TABLE, timeout: float = 30.0) -> None:
    """Declare ``table`` eventual (through Raft: retried while the cluster elects)."""
    deadline = time.monotonic() + timeout
    while True:
        client = resp_client(node, 5.0)
        try:
            client.execute_command("AMBER.TABLE", table, "CONSISTENCY", "eventual")
            return
        except (redis.RedisError, OSError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)
        finally:
            client.close()


def recheck_eventual(folder: Path) -> EventualJudgement:
    """Judge an eventual run's files again (``history.jsonl``, ``eventual.json``)."""
    document = json.loads((folder / "eventual.json").read_text())
    return judge_eventual(
        read_history(folder / "history.jsonl"),
        document["states"],
        document["seconds"],
        bound=document["bound"],
        members=document["members"],
    )
