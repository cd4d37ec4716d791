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

With ``shards`` S > 1 the cluster is S Raft groups of ``nodes`` members
each, speaking the Redis Cluster protocol (a key another group owns answers
``MOVED``, which the clients follow). Everything above is then per group:
a leader in every group, every group's members settled on their group's
revision, one ``LOCAL`` watch per member (its group's stream) plus a merged
watch (every group's, as clients see it) on the first member of each group,
all checked within each group (:func:`~amber.chaos.watchcheck.check_groups`).
The final reads go to each key's owner, and the set's read-set is the union over the groups of the
``s:*`` keys in the slots each group serves (copies left behind by an
interrupted move do not count). The ``reshard`` nemesis moves slots
between groups; :meth:`~amber.chaos.nemesis.Nemesis.heal_all` leaves none
frozen or importing.

With the ``crash`` nemesis (``--nodes 1`` only) step 1 starts one plain
server instead (:class:`~amber.chaos.single.SingleServer`: no Raft, the log
backend on the volatile file layer, so a SIGKILL loses what was not
fsynced) and "a leader" means "it answers PING". The same workload and
checkers apply: a single server must be linearizable too, and with
``durability="always"`` lose no acknowledged write; with ``never`` it may,
and the durability checker is expected to say so.

``workload="eventual"`` runs a different round, on an eventual
(last-writer-wins) table: :func:`amber.chaos.eventual.run_eventual`.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from ..cluster.slots import ShardState, key_slot
from ..config import DURABILITY_MODES
from ..replication.local import LocalCluster, LocalNode, free_base_port
from .history import Function, Record
from .lwwcheck import EventualJudgement
from .nemesis import ALL_KINDS, CLOCK_SKEW, CRASH, EVENTUAL_KINDS, KINDS, RESHARD, Nemesis, plan
from .proxy import ProxyNetwork
from .single import SingleServer, ready
from .verdict import Judgement, judge, save_watch
from .wire import find_leader, resp_client, status
from .workload import (
    MAX_HOPS,
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
#: ``register``: linearizable registers, a set, watches (strong tables); ``eventual``:
#: puts, merges and deletes on an eventual table (:mod:`.eventual`).
WORKLOADS = ("register", "eventual")


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
    #: Raft groups (``nodes`` members each); more than one speaks Redis Cluster.
    shards: int = 1
    #: One of :data:`WORKLOADS`.
    workload: str = "register"

    def __post_init__(self) -> None:
        if self.workload not in WORKLOADS:
            raise ValueError(f"--workload must be one of {', '.join(WORKLOADS)}")
        if self.workload == "eventual":
            wrong = sorted(set(self.nemesis) - set(EVENTUAL_KINDS))
            if wrong:
                raise ValueError(
                    f"the eventual workload takes the nemeses {', '.join(EVENTUAL_KINDS)}, "
                    f"not {', '.join(wrong)}"
                )
            if self.shards != 1 or self.nodes < 2:
                raise ValueError("the eventual workload runs on one group of 2 or more members")
        elif CLOCK_SKEW in self.nemesis:
            raise ValueError("the clock-skew nemesis needs --workload eventual")
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
        if not 1 <= self.shards <= 5:
            raise ValueError("--shards must be between 1 and 5")
        if self.shards > 1 and ({"membership", CRASH} & set(self.nemesis)):
            raise ValueError("with --shards the nemeses are kill, pause, partition and reshard")
        if self.shards == 1 and RESHARD in self.nemesis:
            raise ValueError("the reshard nemesis needs --shards 2 or more")
        if self.durability not in DURABILITY_MODES:
            raise ValueError(f"--durability must be one of {', '.join(DURABILITY_MODES)}")
        if self.clients < 1 or self.keys < 1 or self.seconds <= 0:
            raise ValueError("--clients, --keys and --seconds must be positive")


@dataclass
class ChaosRun:
    """A finished run: the judgement and everything the report shows."""

    options: ChaosOptions
    judgement: Judgement | EventualJudgement
    records: list[Record]
    faults: list[dict[str, Any]]
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    #: A sharded run: each group's members, and the registers it served first and last.
    shards: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``MOVED`` replies the clients followed.
    redirects: int = 0
    #: More numbers for the report (the eventual workload's ``minority_writes``).
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def single(self) -> bool:
        """A single plain server (the crash nemesis), not a cluster."""
        return CRASH in self.options.nemesis

    @property
    def reshards(self) -> list[dict[str, Any]]:
        """The moves the reshard nemesis completed."""
        return [
            f["move"]
            for f in self.faults
            if f["kind"] == RESHARD and f["applied_at"] is not None and not f["error"]
        ]

    @property
    def faults_injected(self) -> int:
        return sum(1 for f in self.faults if f["applied_at"] is not None and not f["error"])

    def report(self) -> dict[str, Any]:
        options = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self.options).items()}
        return {
            "verdict": self.judgement.verdict,
            "workload": self.options.workload,
            "options": options,
            "operations_checked": self.judgement.checked_operations,
            "faults_injected": self.faults_injected,
            "faults": self.faults,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "client_errors": self.errors,
            "notes": self.notes,
            **self.extra,
            **(
                {"shards": self.shards, "redirects": self.redirects, "reshards": self.reshards}
                if self.shards
                else {}
            ),
            "checks": self.judgement.to_json(),
        }


def run(options: ChaosOptions, log: Callable[[str], None] = lambda _: None) -> ChaosRun:
    """Run one chaos round and write its files into ``options.out``; see the module doc."""
    if options.workload == "eventual":
        from .eventual import run_eventual  # noqa: PLC0415 - it imports this module

        return run_eventual(options, log)
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    # A previous run's members must not come back: every run starts from empty folders.
    shutil.rmtree(out / "cluster", ignore_errors=True)
    timings: dict[str, float] = {}
    notes: list[str] = []
    began = time.monotonic()
    proxies = ProxyNetwork(seed=options.seed) if "partition" in options.nemesis else None
    single = CRASH in options.nemesis
    sharded = options.shards > 1
    total = options.nodes * options.shards
    base_port = free_base_port(total, low=RAFT_PORTS[0], high=RAFT_PORTS[1])
    cluster: LocalCluster
    if single:
        cluster = SingleServer(out / "cluster", base_port=base_port, durability=options.durability)
    else:
        cluster = LocalCluster(
            out / "cluster",
            total,
            base_port=base_port,
            durability=options.durability,
            peer_address=proxies.peer_address if proxies is not None else None,
            resp_peer_address=proxies.resp_address if proxies is not None else None,
            redis_cluster=sharded,
            shards=options.shards,
        )
    recorder = Recorder(out / "history.jsonl")
    stop = threading.Event()
    watches: list[NodeWatch] = []
    clients: list[RegisterClient] = []
    nemesis: Nemesis | None = None
    final_state: dict[str, Any] = {}
    revisions: dict[str, int] | None = None
    owners: dict[str, str] = {}
    keys = [register_key(i) for i in range(options.keys)]
    shards = _shard_report(cluster, keys) if sharded else {}
    try:
        cluster.start_all()
        if single:
            if not _wait_ready(cluster.nodes[0], 30):
                raise RuntimeError("the server did not answer within 30 s")
        elif any(find_leader(cluster, g, timeout=30) is None for g in cluster.groups()):
            raise RuntimeError("a Raft group elected no leader within 30 s")
        timings["startup"] = time.monotonic() - began
        what = "single server (volatile files)" if single else f"cluster of {options.nodes}"
        if sharded:
            what = f"{options.shards} groups of {options.nodes}"
        log(f"{what} up in {timings['startup']:.1f}s; running the workload")
        workload_end = time.monotonic() + options.seconds
        drain_deadline = workload_end + options.recovery_timeout + 60
        watches = _watches(cluster, stop, drain_deadline)
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
                groups=cluster.groups if sharded else None,
            )
            for p in range(options.clients)
        ]
        faults = plan(options.seed, options.seconds, options.nemesis, options.nodes)
        nemesis = Nemesis(cluster, proxies, faults, recorder.now, log, keys=keys)
        for client in clients:
            client.start()
        nemesis.start()
        for client in clients:
            client.join(max(0.0, workload_end - time.monotonic()) + options.op_timeout + 5)
        nemesis.stop()
        nemesis.heal_all()
        notes.extend(nemesis.notes)
        timings["workload"] = recorder.now()
        healed = time.monotonic()
        settled = _settle_all(cluster, options.recovery_timeout, notes, single=single)
        timings["recovery"] = time.monotonic() - healed
        if sharded:
            final_state, revisions, owners = _final_reads_sharded(cluster, recorder, options, notes)
        else:
            final_state, revision = _final_reads(cluster, recorder, options, notes)
            revisions = None if revision is None else {"g1": revision}
        if settled is None:
            notes.append("the final reads ran on a cluster that had not settled")
        _drain(cluster, watches, revisions, deadline=time.monotonic() + 20)
        notes.extend(
            f"{w.name} reached revision {w.lasts.get(g, 0)} of {g}'s {target}"
            for w in watches
            if revisions is not None and w.compacted is None
            for g, target in _targets(cluster, w, revisions).items()
            if w.lasts.get(g, 0) < target
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
    streams, skipped, groups = _streams(cluster, watches, revisions)
    final_revision: int | dict[str, int] | None = (
        revisions if sharded or revisions is None else revisions["g1"]
    )
    save_watch(
        out / "watch.json",
        streams,
        final_state,
        skipped,
        final_revision,
        groups=groups,
        owners=owners,
    )
    checked = time.monotonic()
    judgement = judge(
        recorder.records,
        streams,
        final_state,
        skipped_streams=skipped,
        budget=options.check_budget,
        groups=groups or None,
        owners=owners if sharded else None,
    )
    timings["check"] = time.monotonic() - checked
    timings["total"] = time.monotonic() - began
    if sharded:
        for name, info in shards.items():
            info["registers_at_end"] = sorted(
                register_key(0).partition(":")[0] + ":" + k for k, g in owners.items() if g == name
            )
        if any(f.move for f in (nemesis.records if nemesis is not None else [])):
            notes.append(
                "slots moved between groups: each group's watch replay is compared with the "
                "final state of the keys it serves at the end"
            )
    result = ChaosRun(
        options,
        judgement,
        recorder.records,
        [r.to_json() for r in nemesis.records] if nemesis is not None else [],
        timings,
        notes,
        dict(sorted(recorder.errors.items())),
        shards,
        sum(c.redirects for c in clients),
    )
    return write_report(result, out, "amber chaos")


def write_report(result: ChaosRun, out: Path, what: str) -> ChaosRun:
    """``report.json`` and ``timeline.png`` of a finished run (``what`` heads the plot)."""
    options, timings = result.options, result.timings
    (out / "report.json").write_text(json.dumps(result.report(), indent=2) + "\n")
    try:
        from .timeline import plot_timeline  # noqa: PLC0415

        plot_timeline(
            result.records,
            result.faults,
            out / "timeline.png",
            title=f"{what} seed {options.seed}: {', '.join(options.nemesis)} "
            f"— {result.judgement.verdict}",
            end=timings.get("workload"),
        )
    except ImportError as exc:
        result.notes.append(f"no timeline.png: {exc} (install amber[chaos])")
    return result


def _group_name(cluster: LocalCluster, node: LocalNode) -> str:
    """``g1``, ``g2``, …: the group names of the generated shard map (``g1`` unsharded)."""
    return f"g{cluster.group_of(node) + 1}" if cluster.shards > 1 else "g1"


def _shard_report(cluster: LocalCluster, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Each group's members and the registers its initial slot ranges hold."""
    return {
        f"g{g + 1}": {
            "members": [n.node_id for n in group],
            "registers_at_start": [
                k
                for k in keys
                if any(a <= key_slot(k.encode()) <= b for a, b in cluster.slot_ranges[g])
            ],
        }
        for g, group in enumerate(cluster.groups())
    }


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


def _settle_all(
    cluster: LocalCluster, timeout: float, notes: list[str], *, single: bool = False
) -> dict[str, int] | None:
    """:func:`_settle` each Raft group, within one ``timeout``; their revisions."""
    deadline = time.monotonic() + timeout
    groups = [list(cluster.nodes)] if single else cluster.groups()
    settled: dict[str, int] = {}
    for group in groups:
        revision = _settle(cluster, group, deadline - time.monotonic(), notes, single=single)
        if revision is None:
            return None
        settled[_group_name(cluster, group[0])] = revision
    return settled


def _settle(
    cluster: LocalCluster,
    members: list[LocalNode],
    timeout: float,
    notes: list[str],
    *,
    single: bool = False,
) -> int | None:
    """Wait for a leader of ``members`` (or the single server) and for every one of them to
    hold the same revision for 2 s."""
    deadline = time.monotonic() + max(1.0, timeout)
    wait = max(1.0, deadline - time.monotonic())
    if single:
        if not _wait_ready(cluster.nodes[0], wait):
            notes.append("the server did not come back after healing")
            return None
    elif find_leader(cluster, members, timeout=wait) is None:
        notes.append(f"no leader among {[n.node_id for n in members]} after healing")
        return None
    stable_since, last = time.monotonic(), None
    while time.monotonic() < deadline:
        try:
            revisions = {_revision(n, single) for n in members}
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
    notes.append(f"{[n.node_id for n in members]} did not settle on one revision in time")
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
            state = _read_registers(recorder, process, options.keys, client.get)
            _recorded(recorder, process, "read-set", SET_KEY, functools.partial(read_set, client))
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


def _recorded(
    recorder: Recorder,
    process: int,
    f: Function,
    key: str,
    read: Callable[[], Any],
    *,
    shown: Callable[[Any], Any] = lambda value: value,
) -> Any:
    """One final read, recorded: ``ok`` with ``shown(value)``, or ``fail`` if it raises."""
    recorder.add(process, "invoke", f, key, None)
    try:
        value = read()
    except (redis.RedisError, OSError, RuntimeError):
        recorder.add(process, "fail", f, key, None)
        raise
    recorder.add(process, "ok", f, key, shown(value))
    return value


def _read_registers(
    recorder: Recorder, process: int, keys: int, get: Callable[[str], Any]
) -> dict[str, Any]:
    """Every register read once through ``get`` and recorded; the final state they give."""
    state: dict[str, Any] = {}
    for key in (register_key(i) for i in range(keys)):
        read = functools.partial(get, key)
        raw = _recorded(recorder, process, "read", key, read, shown=decode_value)
        if raw is not None:
            state[key.partition(":")[2]] = raw.decode() if isinstance(raw, bytes) else raw
    return state


def _final_reads_sharded(
    cluster: LocalCluster, recorder: Recorder, options: ChaosOptions, notes: list[str]
) -> tuple[dict[str, Any], dict[str, int] | None, dict[str, str]]:
    """The final reads of a sharded run: each register from its owner (following
    ``MOVED``), the set as the union over the groups of the ``s:*`` keys in the slots
    each serves; every group's revision unchanged across them. Also returns which
    group served each register."""
    process = options.clients
    groups = cluster.groups()
    names = [f"g{g + 1}" for g in range(len(groups))]
    by_port = {n.resp_port: g for g, group in enumerate(groups) for n in group}
    for attempt in range(3):
        clients = [resp_client(group[attempt % len(group)], timeout=15.0) for group in groups]
        try:
            before = [int(c.execute_command("AMBER.REV")) for c in clients]
            owners: dict[str, str] = {}
            routed = functools.partial(_routed_get, clients, by_port, names, owners)
            state = _read_registers(recorder, process, options.keys, routed)
            union = functools.partial(_served_union, names, clients)
            _recorded(recorder, process, "read-set", SET_KEY, union)
            after = [int(c.execute_command("AMBER.REV")) for c in clients]
        except (redis.RedisError, OSError, RuntimeError) as exc:
            notes.append(f"final reads failed: {exc}")
            continue
        finally:
            for c in clients:
                c.close()
        if before == after:
            return state, dict(zip(names, after, strict=True)), owners
        notes.append(f"revisions moved during the final reads ({before} -> {after}); again")
    return {}, None, {}


def _routed_get(
    clients: list[redis.Redis],
    by_port: dict[int, int],
    names: list[str],
    owners: dict[str, str],
    key: str,
) -> Any:
    """``GET key`` from the group that serves it (a ``MOVED`` was not applied: follow it);
    notes that group in ``owners``."""
    group = 0
    for _ in range(MAX_HOPS):
        try:
            raw = clients[group].get(key)
        except redis.exceptions.MovedError as exc:
            group = by_port[exc.port]
            continue
        owners[key.partition(":")[2]] = names[group]
        return raw
    raise redis.ResponseError(f"{key}: more than {MAX_HOPS} redirects")


def _served_union(names: list[str], clients: list[redis.Redis]) -> list[int]:
    """The read-set of a sharded run: the union of what each group serves."""
    pairs = zip(names, clients, strict=True)
    return sorted(e for name, c in pairs for e in _served_set(c, name))


def _served_set(client: redis.Redis, group: str) -> list[int]:
    """The set's elements whose keys are in the slots ``group`` serves (not frozen, not
    copies an interrupted move left behind)."""
    state = ShardState.from_doc(json.loads(client.execute_command("AMBER.SLOTS", "GET")))
    if state.group != group:
        raise RuntimeError(f"asked group {group}, answered by {state.group}")
    if state.frozen or state.importing:
        raise RuntimeError(f"group {group} still has slots frozen or importing")
    owned = state.owned()
    keys = [bytes(raw) for raw in client.execute_command("KEYS", f"{SET_KEY}:*")]
    return [int(raw.partition(b":e")[2]) for raw in keys if key_slot(raw) in owned]


def _watches(cluster: LocalCluster, stop: threading.Event, deadline: float) -> list[NodeWatch]:
    """One watch per node; with shards its group's (``LOCAL``), plus one merged watch (every
    group's stream, what a client sees) on the first member of each group."""
    if cluster.shards == 1:
        return [NodeWatch(n, stop=stop, deadline=deadline) for n in cluster.nodes]
    names = [f"g{g + 1}" for g in range(cluster.shards)]
    local = [NodeWatch(n, stop=stop, deadline=deadline, scope="local") for n in cluster.nodes]
    merged = [
        NodeWatch(g[0], stop=stop, deadline=deadline, scope="merged", groups=names)
        for g in cluster.groups()
    ]
    return local + merged


def _targets(cluster: LocalCluster, watch: NodeWatch, revisions: dict[str, int]) -> dict[str, int]:
    """The revision per group ``watch`` must reach (keys as in ``watch.lasts``)."""
    if watch.scope == "merged":
        return dict(revisions)
    return {"": revisions[_group_name(cluster, watch.node)]}


def _drain(
    cluster: LocalCluster,
    watches: list[NodeWatch],
    revisions: dict[str, int] | None,
    deadline: float,
) -> None:
    """Wait until every live watch has reached its groups' revisions and gone quiet."""
    if revisions is None:
        return
    for watch in watches:
        targets = _targets(cluster, watch, revisions)
        while time.monotonic() < deadline and watch.is_alive():
            quiet = time.monotonic() - watch.last_event_at
            if all(watch.lasts.get(g, 0) >= t for g, t in targets.items()) and quiet > 0.5:
                break
            time.sleep(0.1)


def _streams(
    cluster: LocalCluster, watches: list[NodeWatch], revisions: dict[str, int] | None
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str], dict[str, str]]:
    """The checked streams (up to each group's final revision), the ones left out and why,
    and (with shards) each stream's group: a merged watch is split into one stream per
    group, named ``<node>+merged/<group>``."""
    streams: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    groups: dict[str, str] = {}
    for watch in watches:
        name = watch.node.node_id + ("+merged" if watch.scope == "merged" else "")
        if watch.compacted is not None:
            skipped[name] = f"resume answered {watch.compacted}"
            continue
        parts: dict[str, list[dict[str, Any]]] = {}
        if watch.scope == "merged":
            for event in watch.events:
                group = event["group"]
                parts.setdefault(group, []).append({k: v for k, v in event.items() if k != "group"})
        else:
            parts[_group_name(cluster, watch.node)] = watch.events
        for group, events in sorted(parts.items()):
            stream = f"{name}/{group}" if watch.scope == "merged" else name
            final = None if revisions is None else revisions[group]
            streams[stream] = [e for e in events if final is None or e["revision"] <= final]
            if cluster.shards > 1:
                groups[stream] = group
    return streams, skipped, groups
