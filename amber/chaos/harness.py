# mypy: disable-error-code="no-untyped-call"
"""``amber chaos``: run a real cluster under faults, then judge what the clients saw.

A run, step by step (every step bounded in time):

1. start a :class:`~amber.replication.local.LocalCluster` on loopback (raft
   ports in 30000-32759; with the ``partition`` nemesis every Raft link
   runs through a :mod:`~amber.chaos.proxy`) and wait for a leader;
2. start one :class:`~amber.chaos.workload.NodeWatch` per node and the
   client threads (:class:`~amber.chaos.workload.RegisterClient`), then the
   :class:`~amber.chaos.nemesis.Nemesis` with the seeded plan;
3. after ``seconds``: stop the clients, stop the nemesis, heal everything
   (proxies, pauses, kills, a removed member), wait until a leader is back
   and every member reports the same revision, unchanged for a moment;
4. final reads, recorded in the history as process ``clients``: one
   ``GET`` per register and the ``read-set``; the final revision; the
   watches are drained up to it;
5. stop the cluster (always, in ``finally``), close the proxies, judge
   (:func:`~amber.chaos.verdict.judge`), and write ``history.jsonl``,
   ``watch.json``, ``report.json`` and ``timeline.png`` into ``out``.

With the ``crash`` nemesis (``--nodes 1`` only) step 1 starts one plain
server instead (:class:`~amber.chaos.single.SingleServer`: no Raft, the log
backend on the volatile file layer, so a SIGKILL loses what was not
fsynced) and "a leader" means "it answers PING". The same workload and
checkers apply: a single server must be linearizable too, and with
``durability="always"`` lose no acknowledged write; with ``never`` it may,
and the durability checker is expected to say so.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from ..config import DURABILITY_MODES
from ..replication.local import LocalCluster, LocalNode, free_base_port
from .history import Record
from .nemesis import ALL_KINDS, CRASH, KINDS, Nemesis, plan
from .proxy import ProxyNetwork
from .single import SingleServer, ready
from .verdict import Judgement, judge, save_watch
from .wire import find_leader, resp_client, status
from .workload import (
    SET_KEY,
    NodeWatch,
    Recorder,
    RegisterClient,
    decode_value,
    read_set,
    register_key,
)

__all__ = ["ChaosOptions", "ChaosRun", "run"]

#: Raft ports: five digits, above every proxy port, below Linux's ephemeral range.
RAFT_PORTS = (30_000, 32_700)


@dataclass(frozen=True)
class ChaosOptions:
    """What ``amber chaos`` takes on its command line."""

    out: Path
    nodes: int = 3
    seconds: float = 60.0
    nemesis: tuple[str, ...] = KINDS
    clients: int = 10
    keys: int = 8
    seed: int = 7
    #: Operations per second per client, at most.
    rate: float = 10.0
    #: Client socket timeout: a slower operation completes ``info`` (or ``fail`` for reads).
    op_timeout: float = 2.5
    #: Time budget of the linearizability search.
    check_budget: float = 60.0
    #: Longest wait for the healed cluster to agree again.
    recovery_timeout: float = 60.0
    #: The servers' ``--durability``.
    durability: str = "always"

    def __post_init__(self) -> None:
        unknown = set(self.nemesis) - set(ALL_KINDS)
        if unknown:
            raise ValueError(
                f"unknown nemesis {sorted(unknown)}; choose from {', '.join(ALL_KINDS)}"
            )
        if not 1 <= self.nodes <= 9:
            raise ValueError("--nodes must be between 1 and 9")
        if CRASH in self.nemesis and (self.nodes != 1 or len(set(self.nemesis)) > 1):
            raise ValueError(
                "the crash nemesis runs alone on a single server: --nodes 1 --nemesis crash"
            )
        if self.durability not in DURABILITY_MODES:
            raise ValueError(f"--durability must be one of {', '.join(DURABILITY_MODES)}")
        if self.clients < 1 or self.keys < 1 or self.seconds <= 0:
            raise ValueError("--clients, --keys and --seconds must be positive")


@dataclass
class ChaosRun:
    """A finished run: the judgement and everything the report shows."""

    options: ChaosOptions
    judgement: Judgement
    records: list[Record]
    faults: list[dict[str, Any]]
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def single(self) -> bool:
        """A single plain server (the crash nemesis), not a cluster."""
        return CRASH in self.options.nemesis

    @property
    def faults_injected(self) -> int:
        return sum(1 for f in self.faults if f["applied_at"] is not None and not f["error"])

    def report(self) -> dict[str, Any]:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()}
        return {
            "verdict": self.judgement.verdict,
            "options": options,
            "operations_checked": self.judgement.checked_operations,
            "faults_injected": self.faults_injected,
            "faults": self.faults,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "client_errors": self.errors,
            "notes": self.notes,
            "checks": self.judgement.to_json(),
        }


def run(options: ChaosOptions, log: Callable[[str], None] = lambda _: None) -> ChaosRun:
    """Run one chaos round and write its files into ``options.out``; see the module doc."""
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    # A previous run's members must not come back: every run starts from empty folders.
    shutil.rmtree(out / "cluster", ignore_errors=True)
    timings: dict[str, float] = {}
    notes: list[str] = []
    began = time.monotonic()
    proxies = ProxyNetwork(seed=options.seed) if "partition" in options.nemesis else None
    single = CRASH in options.nemesis
    base_port = free_base_port(options.nodes, low=RAFT_PORTS[0], high=RAFT_PORTS[1])
    cluster: LocalCluster
    if single:
        cluster = SingleServer(out / "cluster", base_port=base_port, durability=options.durability)
    else:
        cluster = LocalCluster(
            out / "cluster",
            options.nodes,
            base_port=base_port,
            durability=options.durability,
            peer_address=proxies.peer_address if proxies is not None else None,
        )
    recorder = Recorder(out / "history.jsonl")
    stop = threading.Event()
    watches: list[NodeWatch] = []
    nemesis: Nemesis | None = None
    final_state: dict[str, Any] = {}
    final_revision: int | None = None
    try:
        cluster.start_all()
        if single:
            if not _wait_ready(cluster.nodes[0], 30):
                raise RuntimeError("the server did not answer within 30 s")
        elif find_leader(cluster, cluster.nodes, timeout=30) is None:
            raise RuntimeError("the cluster elected no leader within 30 s")
        timings["startup"] = time.monotonic() - began
        what = "single server (volatile files)" if single else f"cluster of {options.nodes}"
        log(f"{what} up in {timings['startup']:.1f}s; running the workload")
        workload_end = time.monotonic() + options.seconds
        drain_deadline = workload_end + options.recovery_timeout + 60
        watches = [NodeWatch(n, stop=stop, deadline=drain_deadline) for n in cluster.nodes]
        for watch in watches:
            watch.start()
        recorder.origin = time.monotonic()
        clients = [
            RegisterClient(
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
        faults = plan(options.seed, options.seconds, options.nemesis, options.nodes)
        nemesis = Nemesis(cluster, proxies, faults, recorder.now, log)
        for client in clients:
            client.start()
        nemesis.start()
        for client in clients:
            client.join(max(0.0, workload_end - time.monotonic()) + options.op_timeout + 5)
        nemesis.stop()
        nemesis.heal_all()
        timings["workload"] = recorder.now()
        healed = time.monotonic()
        final_revision = _settle(cluster, options.recovery_timeout, notes, single=single)
        timings["recovery"] = time.monotonic() - healed
        final_state, final_revision = _final_reads(cluster, recorder, options, notes)
        _drain(watches, final_revision, deadline=time.monotonic() + 20)
        notes.extend(
            f"watch on {w.node.node_id} reached revision {w.last} of {final_revision}"
            for w in watches
            if final_revision is not None and w.compacted is None and w.last < final_revision
        )
    finally:
        stop.set()
        for watch in watches:
            watch.join(5)
        if nemesis is not None:
            nemesis.stop(5)
        cluster.stop_all()
        if proxies is not None:
            proxies.close()
        recorder.close()
    streams, skipped = _streams(watches, final_revision)
    save_watch(out / "watch.json", streams, final_state, skipped, final_revision)
    checked = time.monotonic()
    judgement = judge(
        recorder.records,
        streams,
        final_state,
        skipped_streams=skipped,
        budget=options.check_budget,
    )
    timings["check"] = time.monotonic() - checked
    timings["total"] = time.monotonic() - began
    result = ChaosRun(
        options,
        judgement,
        recorder.records,
        [r.to_json() for r in nemesis.records] if nemesis is not None else [],
        timings,
        notes,
        dict(sorted(recorder.errors.items())),
    )
    (out / "report.json").write_text(json.dumps(result.report(), indent=2) + "\n")
    try:
        from .timeline import plot_timeline  # noqa: PLC0415

        plot_timeline(
            result.records,
            result.faults,
            out / "timeline.png",
            title=f"amber chaos seed {options.seed}: {', '.join(options.nemesis)} "
            f"— {judgement.verdict}",
            end=timings.get("workload"),
        )
    except ImportError as exc:
        notes.append(f"no timeline.png: {exc} (install amber[chaos])")
    return result


def _members(cluster: LocalCluster) -> list[LocalNode]:
    return list(cluster.nodes)


def _wait_ready(node: LocalNode, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not ready(node):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _revision(node: LocalNode, single: bool) -> int:
    if not single:
        return int(status(node)["revision"])
    client = resp_client(node, timeout=2.0)
    try:
        return int(client.execute_command("AMBER.REV"))
    finally:
        client.close()


def _settle(
    cluster: LocalCluster, timeout: float, notes: list[str], *, single: bool = False
) -> int | None:
    """Wait for a leader (or the single server) and for every member to hold the same
    revision for 2 s."""
    deadline = time.monotonic() + timeout
    wait = max(1.0, deadline - time.monotonic())
    if single:
        if not _wait_ready(cluster.nodes[0], wait):
            notes.append("the server did not come back after healing")
            return None
    elif find_leader(cluster, cluster.nodes, timeout=wait) is None:
        notes.append("no leader after healing")
        return None
    stable_since, last = time.monotonic(), None
    while time.monotonic() < deadline:
        try:
            revisions = {_revision(n, single) for n in _members(cluster)}
        except (redis.RedisError, OSError, ValueError):
            revisions = set()
        if len(revisions) == 1:
            (revision,) = revisions
            if revision != last:
                stable_since, last = time.monotonic(), revision
            elif time.monotonic() - stable_since >= 2.0:
                return int(revision)
        else:
            last = None
        time.sleep(0.2)
    notes.append("the members did not settle on one revision in time")
    return last


def _final_reads(
    cluster: LocalCluster, recorder: Recorder, options: ChaosOptions, notes: list[str]
) -> tuple[dict[str, Any], int | None]:
    """Barriered reads of every register and of the set, recorded as process ``clients``."""
    process = options.clients
    for attempt in range(3):
        node = cluster.nodes[attempt % len(cluster.nodes)]
        client = resp_client(node, timeout=15.0)
        try:
            before = int(client.execute_command("AMBER.REV"))
            state: dict[str, Any] = {}
            for i in range(options.keys):
                key = register_key(i)
                recorder.add(process, "invoke", "read", key, None)
                try:
                    raw = client.get(key)
                except (redis.RedisError, OSError):
                    recorder.add(process, "fail", "read", key, None)
                    raise
                value = decode_value(raw)
                recorder.add(process, "ok", "read", key, value)
                if raw is not None:
                    state[key.partition(":")[2]] = raw.decode() if isinstance(raw, bytes) else raw
            recorder.add(process, "invoke", "read-set", SET_KEY, None)
            try:
                elements = read_set(client)
            except (redis.RedisError, OSError):
                recorder.add(process, "fail", "read-set", SET_KEY, None)
                raise
            recorder.add(process, "ok", "read-set", SET_KEY, elements)
            after = int(client.execute_command("AMBER.REV"))
        except (redis.RedisError, OSError) as exc:
            notes.append(f"final reads on {node.node_id} failed: {exc}")
            continue
        finally:
            client.close()
        if before == after:
            return state, after
        notes.append(f"revision moved during the final reads ({before} -> {after}); again")
    return {}, None


def _drain(watches: list[NodeWatch], revision: int | None, deadline: float) -> None:
    """Wait until every live watch has reached ``revision`` and gone quiet."""
    if revision is None:
        return
    for watch in watches:
        while time.monotonic() < deadline and watch.is_alive():
            quiet = time.monotonic() - watch.last_event_at
            if watch.last >= revision and quiet > 0.5:
                break
            time.sleep(0.1)


def _streams(
    watches: list[NodeWatch], final_revision: int | None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    streams: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for watch in watches:
        node_id = watch.node.node_id
        if watch.compacted is not None:
            skipped[node_id] = f"resume answered {watch.compacted}"
            continue
        events = watch.events
        if final_revision is not None:
            events = [e for e in events if e["revision"] <= final_revision]
        streams[node_id] = events
    return streams, skipped
