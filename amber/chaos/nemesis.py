# mypy: disable-error-code="no-untyped-call"
"""The nemesis: a seeded schedule of faults, and the executor that injects them.

:func:`plan` is pure: the same ``(seed, seconds, kinds, nodes)`` always gives
the same list of :class:`Fault` — when, what, and an abstract target
(``leader``, or a pick that selects among the members at run time, so a
replay with the same seed hits the same positions). One fault at a time,
each followed by a quiet gap:

- ``kill``: SIGKILL a node (the leader or a random one); restart it at the
  end of the window (``LocalCluster.start``: it rejoins with its data).
- ``pause``: SIGSTOP, then SIGCONT.
- ``partition``: through the per-link proxies (:mod:`amber.chaos.proxy`):
  ``isolate-leader`` (leader | rest), ``halves`` (a random minority |
  majority), ``bridge`` (two halves that only one node connects).
- ``crash`` (a single server, ``--nodes 1``, run on the volatile file layer:
  see :mod:`amber.chaos.single`): SIGKILL, which loses every byte not yet
  fsynced, as a power cut would; restart at the end of a shorter window.
- ``reshard`` (a sharded cluster): move a slot range holding a register
  key's slot to another group with :class:`~amber.cluster.reshard.Mover`,
  in this thread, while the clients go on; every second reshard moves the
  previous range back to where it came from, so slots go back and forth.
  Target ``slots+kill`` also SIGKILLs a member of the source or target
  group 0-0.3 s after the first step is done, likely in the middle of the
  next (restarted at the end of the window), so moves are interrupted too.
  A move that fails (a group without a leader) is recorded, and repaired
  at its heal (or by the next move, or :meth:`Nemesis.heal_all`).
- ``clock-skew`` (the eventual workload): give one member's hybrid clock an
  offset with ``AMBER.LWW CLOCK-OFFSET`` (the servers run with
  ``--allow-clock-offset``): target ``beyond`` is 1-3 s more than the
  cluster's ``--max-clock-skew-ms`` ahead (its peers refuse its writes
  until real time catches up), ``within`` 30-80 % of the bound ahead
  (accepted at once), ``behind`` 1-3 s more than the bound behind (it
  refuses its peers' writes). The heal sets the offset back to 0 (a killed
  member restarts at 0 anyway).
- ``membership``: ``AMBER.CLUSTER REMOVE`` the member with the greatest raft
  address (leadership is transferred away first if it leads), stop it and
  wipe its folder; at the end of the window start it fresh and
  ``AMBER.CLUSTER ADD`` it again. Always that member, because it is the one
  every node knows by its real address when links run through proxies.
  Not with shards (refused by ``amber chaos``).

With shards, ``leader`` means the leader of one group (picked by the
fault's ``pick``) and a partition splits the members of one group.

:class:`Nemesis` executes a plan against a
:class:`~amber.replication.local.LocalCluster` and records what actually
happened (:class:`FaultRecord`: the nodes hit, wall times, any error);
:meth:`Nemesis.heal_all` undoes whatever is still in effect.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from ..cluster.reshard import Mover
from ..cluster.slots import SLOTS, key_slot
from ..replication.local import LocalCluster, LocalNode
from .proxy import ProxyNetwork
from .wire import error_code, find_leader, resp_client, status

__all__ = [
    "ALL_KINDS",
    "CLOCK_SKEW",
    "CRASH",
    "EVENTUAL_KINDS",
    "KINDS",
    "RESHARD",
    "SHARDED_KINDS",
    "Fault",
    "FaultRecord",
    "Nemesis",
    "plan",
]

#: The cluster nemeses (the default of ``amber chaos``).
KINDS = ("kill", "pause", "partition", "membership")
#: The single-server nemesis: a kill that loses un-fsynced bytes.
CRASH = "crash"
#: Moves slots between groups (a sharded cluster only).
RESHARD = "reshard"
#: The default nemeses of a sharded run (membership is refused there).
SHARDED_KINDS = ("kill", "pause", "partition", RESHARD)
#: Shifts one member's eventual (hybrid) clock: the eventual workload only.
CLOCK_SKEW = "clock-skew"
#: The default nemeses of the eventual workload.
EVENTUAL_KINDS = ("kill", "pause", "partition", CLOCK_SKEW)
ALL_KINDS = (*KINDS, RESHARD, CRASH, CLOCK_SKEW)
_SKEWS = ("beyond", "within", "behind")
#: Slots moved per mover step, and the widest range one reshard moves.
_RESHARD_STEP = 64
_RESHARD_WIDTH = (1, 400)
#: A crashed server is down this long (it takes about a second to start again).
_CRASH_WINDOW = (0.5, 2.0)
_PARTITIONS = ("isolate-leader", "halves", "bridge")


@dataclass(frozen=True, slots=True)
class Fault:
    """One planned fault: ``start`` and ``duration`` in seconds from the run's start."""

    start: float
    kind: str
    target: str
    duration: float
    #: Chooses among the members at run time (index, shuffle seed).
    pick: int

    def to_json(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "kind": self.kind,
            "target": self.target,
            "duration": round(self.duration, 3),
            "pick": self.pick,
        }


def plan(
    seed: int,
    seconds: float,
    kinds: Sequence[str],
    nodes: int,
    *,
    warmup: float = 2.0,
    window: tuple[float, float] = (2.0, 5.0),
    gap: tuple[float, float] = (1.5, 3.0),
) -> list[Fault]:
    """The fault schedule of a run; deterministic in its arguments."""
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise ValueError(
            f"unknown nemesis {', '.join(unknown)}; choose from {', '.join(ALL_KINDS)}"
        )
    if not kinds:
        return []
    rng = random.Random(f"amber-chaos-{seed}")
    faults: list[Fault] = []
    t = warmup
    while t < seconds - 1.0 and len(faults) < 10_000:
        kind = rng.choice(sorted(set(kinds)))
        span = _CRASH_WINDOW if kind == CRASH else window
        duration = min(rng.uniform(*span), max(0.5, seconds - t))
        if kind == CRASH:
            target = "server"
        elif kind in ("kill", "pause"):
            target = "leader" if rng.random() < 0.5 else "random"
        elif kind == "partition":
            target = rng.choice(_PARTITIONS) if nodes >= 3 else "isolate-leader"
        elif kind == RESHARD:
            target = rng.choice(("slots", "slots+kill"))
        elif kind == CLOCK_SKEW:
            target = rng.choice(_SKEWS)
        else:
            target = "newest"
        faults.append(Fault(round(t, 3), kind, target, round(duration, 3), rng.randrange(2**31)))
        t += duration + rng.uniform(*gap)
    return faults


@dataclass
class FaultRecord:
    """What a fault did: times are seconds on the history's clock."""

    fault: Fault
    nodes: list[str] = field(default_factory=list)
    start: float | None = None
    end: float | None = None
    detail: str = ""
    error: str | None = None
    #: A reshard's move: ``first``, ``last``, ``target``, ``keys`` (registers in the
    #: range), ``copied`` (keys the mover copied).
    move: dict[str, Any] | None = None
    #: A partition's sides (node ids; a bridge's bridge node is on neither).
    sides: list[list[str]] | None = None

    @property
    def injected(self) -> bool:
        return self.start is not None and self.error is None

    def to_json(self) -> dict[str, Any]:
        return (
            {
                **self.fault.to_json(),
                "nodes": self.nodes,
                "applied_at": None if self.start is None else round(self.start, 3),
                "healed_at": None if self.end is None else round(self.end, 3),
                "detail": self.detail,
                "error": self.error,
            }
            | ({"move": self.move} if self.move is not None else {})
            | ({"sides": self.sides} if self.sides is not None else {})
        )


class Nemesis:
    """Executes a plan on its own thread; every wait is bounded by the plan's end."""

    def __init__(
        self,
        cluster: LocalCluster,
        proxies: ProxyNetwork | None,
        faults: Sequence[Fault],
        clock: Callable[[], float],
        log: Callable[[str], None] = lambda _: None,
        *,
        keys: Sequence[str] = (),
        max_clock_skew_ms: int = 60_000,
    ) -> None:
        self.cluster = cluster
        #: The servers' ``--max-clock-skew-ms``: what the clock-skew offsets are measured by.
        self.max_clock_skew_ms = max_clock_skew_ms
        #: Members given a clock offset and not set back yet.
        self._skewed: set[str] = set()
        #: Wire keys of the registers: a reshard moves a range holding one of them.
        self.keys = list(keys)
        #: What :meth:`heal_all` found and did (the harness reports it).
        self.notes: list[str] = []
        self._reshards = 0
        #: The last range moved forward, and the group it came from.
        self._outbound: tuple[int, int, str] | None = None
        self.proxies = proxies
        self.faults = list(faults)
        self.clock = clock
        self.log = log
        self.records: list[FaultRecord] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._killed: set[str] = set()
        self._paused: set[str] = set()
        self._removed: str | None = None
        self._lock = threading.Lock()

    @property
    def members(self) -> list[LocalNode]:
        return list(self.cluster.nodes)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 90.0) -> None:
        """Stop injecting (the fault in progress is healed first)."""
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        for fault in self.faults:
            if not self._wait_until(fault.start):
                return
            record = FaultRecord(fault)
            self.records.append(record)
            try:
                self._apply(record)
            except Exception as exc:  # a fault that cannot be applied is reported, not fatal
                record.error = f"{error_code(exc)}: {exc}"
            at = record.start if record.start is not None else self.clock()
            self.log(f"{at:7.2f}s {fault.kind} {record.nodes} {record.detail} {record.error or ''}")
            self._wait_until(fault.start + fault.duration)
            try:
                self._heal(record)
            except Exception as exc:
                record.error = (record.error or "") + f" heal: {error_code(exc)}: {exc}"
            record.end = self.clock()

    def _wait_until(self, at: float) -> bool:
        delay = at - self.clock()
        return not self._stop.wait(delay) if delay > 0 else not self._stop.is_set()

    # -- faults ----------------------------------------------------------------------

    def _group(self, fault: Fault) -> list[LocalNode]:
        """The group a fault hits: all members, or with shards one group by ``pick``."""
        groups = self.cluster.groups()
        return groups[fault.pick % len(groups)]

    def _target(self, fault: Fault) -> LocalNode:
        members = [n for n in self.members if n.running]
        if fault.target == "leader":
            leader = find_leader(self.cluster, self._group(fault), timeout=3.0)
            if leader is not None:
                return leader
        return sorted(members, key=lambda n: n.node_id)[fault.pick % len(members)]

    def _apply(self, record: FaultRecord) -> None:
        fault = record.fault
        if fault.kind in ("kill", CRASH):
            node = self._target(fault)
            record.nodes = [node.node_id]
            record.start = self.clock()
            self.cluster.kill(node)
            self._killed.add(node.node_id)
        elif fault.kind == "pause":
            node = self._target(fault)
            record.nodes = [node.node_id]
            record.start = self.clock()
            self.cluster.pause(node)
            self._paused.add(node.node_id)
        elif fault.kind == "partition":
            self._partition(record)
        elif fault.kind == "membership":
            self._remove(record)
        elif fault.kind == RESHARD:
            self._reshard(record)
        elif fault.kind == CLOCK_SKEW:
            self._skew(record)

    def _skew(self, record: FaultRecord) -> None:
        """Shift one member's hybrid clock by an offset measured by the skew bound."""
        fault = record.fault
        node = self._target(fault)
        rng = random.Random(fault.pick)
        bound = self.max_clock_skew_ms
        beyond = bound + rng.randint(1000, 3000)
        offset = {
            "beyond": beyond,
            "within": int(bound * rng.uniform(0.3, 0.8)),
            "behind": -beyond,
        }[fault.target]
        record.nodes = [node.node_id]
        record.start = self.clock()
        _call(node, "AMBER.LWW", "CLOCK-OFFSET", str(offset))
        with self._lock:
            self._skewed.add(node.node_id)
        record.detail = f"clock {offset:+d} ms (bound {bound} ms)"

    def _partition(self, record: FaultRecord) -> None:
        if self.proxies is None:
            raise RuntimeError("partitions need the proxy network")
        fault = record.fault
        group = self._group(fault)
        ids = sorted(n.node_id for n in group)
        if len(ids) < 2:
            raise RuntimeError("a partition needs two members in a group")
        rng = random.Random(fault.pick)
        if fault.target == "isolate-leader":
            leader = find_leader(self.cluster, group, timeout=3.0)
            alone = leader.node_id if leader is not None else rng.choice(ids)
            groups = [[alone], [i for i in ids if i != alone]]
        else:
            rng.shuffle(ids)
            half = len(ids) // 2
            groups = [ids[:half], ids[half:]]
        record.start = self.clock()
        if fault.target == "bridge" and len(ids) >= 3:
            # ids[half] talks to both sides; every other link across the halves is cut.
            bridge = ids[half]
            left, right = ids[:half], ids[half + 1 :]
            cut = [(a, b) for a in left for b in right]
            for a, b in cut:
                self.proxies.cut(a, b)
            record.detail = f"{left} | {right}, bridged by {bridge}"
            record.sides = [sorted(left), sorted(right)]
        else:
            cut = self.proxies.partition(groups)
            record.detail = f"{groups[0]} | {groups[1]}"
            record.sides = [sorted(g) for g in groups]
        record.nodes = sorted({n for link in cut for n in link})

    def _remove(self, record: FaultRecord) -> None:
        if self.cluster.shards > 1:
            raise RuntimeError("the membership nemesis does not run with shards")
        node = max(self.members, key=lambda n: n.raft_address)
        record.nodes = [node.node_id]
        leader = find_leader(self.cluster, self.members, timeout=5.0)
        if leader is None:
            raise RuntimeError("no leader to ask for the removal")
        if leader is node:
            leader = self._move_leadership(node)
        record.start = self.clock()
        _call(leader, "AMBER.CLUSTER", "REMOVE", node.node_id)
        self._removed = node.node_id
        self.cluster.stop(node)
        self.cluster.wipe(node)
        record.detail = f"removed via {leader.node_id}, wiped"

    def _move_leadership(self, node: LocalNode) -> LocalNode:
        """Transfer leadership away from ``node``; returns the new leader.

        PySyncObj denies a transfer unless a follower holds the leader's whole
        log, which under load is a moving target: retry for a few seconds.
        """
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError, OSError):
                _call(node, "AMBER.CLUSTER", "TRANSFER")
            leader = find_leader(self.cluster, self.members, timeout=0.5)
            if leader is not None and leader is not node:
                return leader
            time.sleep(0.05)
        raise RuntimeError(f"leadership did not move away from {node.node_id} in 8 s")

    def _mover(self) -> Mover:
        """A mover seeded at a running member; every call bounded (5 s of retries)."""
        seed = next((n for n in self.members if n.running), self.members[0])
        return Mover(f"{seed.host}:{seed.resp_port}", step=_RESHARD_STEP, timeout=5.0)

    def _reshard(self, record: FaultRecord) -> None:
        """Move a range holding a register's slot away, or (every second time) back."""
        if self.cluster.shards < 2:
            raise RuntimeError("the reshard nemesis needs shards")
        rng = random.Random(record.fault.pick)
        mover = self._mover()
        try:
            states = mover.repair(mover.states())
            owners = mover.owners(states)
            if self._reshards % 2 and self._outbound is not None:
                first, last, target = self._outbound
                self._outbound = None
            else:
                slot = key_slot(rng.choice(self.keys or ["r:k0"]).encode())
                width = rng.randint(*_RESHARD_WIDTH)
                first = max(0, slot - rng.randrange(width))
                last = min(SLOTS - 1, first + width - 1)
                source = owners[slot]
                target = rng.choice(sorted(g for g in states if g != source))
                self._outbound = (first, last, source)
            self._reshards += 1
            keys = sorted(k for k in self.keys if first <= key_slot(k.encode()) <= last)
            sources = sorted({owners[s] for s in range(first, last + 1)} - {target})
            record.nodes = sorted(
                n.node_id
                for g, group in enumerate(self.cluster.groups())
                if f"g{g + 1}" in (target, *sources)
                for n in group
            )
            record.move = {"first": first, "last": last, "target": target, "keys": keys}
            record.detail = f"slots {first}-{last} {','.join(sources) or target} -> {target}"
            killer: list[threading.Timer] = []
            if record.fault.target == "slots+kill":
                victim = sorted(record.nodes)[rng.randrange(len(record.nodes))]
                delay = rng.uniform(0.0, 0.3)
                mover.progress = self._kill_later(record, victim, delay, killer)
            record.start = self.clock()
            try:
                record.move["copied"] = mover.reshard(first, last, target)
                record.detail += f", {record.move['copied']} keys copied"
            finally:
                for timer in killer:
                    timer.join(2.0)  # the kill is in ``_killed`` before the heal looks
        finally:
            mover.close()

    def _kill_later(
        self, record: FaultRecord, node_id: str, delay: float, timers: list[threading.Timer]
    ) -> Callable[[str], None]:
        """A mover progress callback: ``delay`` s after the first step, kill ``node_id``."""

        def kill() -> None:
            self.cluster.kill(self.cluster.node(node_id))
            with self._lock:
                self._killed.add(node_id)
            record.detail += f", killed {node_id} {delay:.2f}s after the first step"

        def progress(_line: str) -> None:
            if not timers:
                timers.append(threading.Timer(delay, kill))
                timers[0].start()

        return progress

    def repair(self) -> str:
        """Finish or cancel an interrupted move (see ``Mover.repair``); what is left over."""
        mover = self._mover()
        try:
            states = mover.repair(mover.states())
        finally:
            mover.close()
        left = {g: (len(s.frozen), len(s.importing)) for g, s in states.items()}
        return ", ".join(
            f"{g}: {f} slots frozen, {i} importing" for g, (f, i) in left.items() if f or i
        )

    # -- healing ---------------------------------------------------------------------

    def _heal(self, record: FaultRecord) -> None:
        kind = record.fault.kind
        if kind in ("kill", CRASH):
            self._restart_killed()
        elif kind == "pause":
            self._resume_paused()
        elif kind == "partition" and self.proxies is not None:
            self.proxies.heal()
        elif kind == "membership":
            self._rejoin(record)
        elif kind == CLOCK_SKEW:
            self._unskew()
        elif kind == RESHARD:
            self._restart_killed()
            if record.error is None:
                return
            for group in self.cluster.groups():
                find_leader(self.cluster, group, timeout=15.0)
            left = self.repair()
            record.detail += "; repaired" + (f", still {left}" if left else "")

    def _restart_killed(self) -> None:
        for node_id in sorted(self._killed):
            node = self.cluster.node(node_id)
            if not node.running:
                self.cluster.start(node)
            self._killed.discard(node_id)

    def _unskew(self) -> None:
        """Set every skewed member's clock offset back to 0 (a restarted one is at 0)."""
        with self._lock:
            skewed, self._skewed = sorted(self._skewed), set()
        for node_id in skewed:
            node = self.cluster.node(node_id)
            if node.running:
                _call(node, "AMBER.LWW", "CLOCK-OFFSET", "0")

    def _resume_paused(self) -> None:
        for node_id in sorted(self._paused):
            self.cluster.resume(self.cluster.node(node_id))
            self._paused.discard(node_id)

    def _rejoin(self, record: FaultRecord | None) -> None:
        if self._removed is None:
            return
        node = self.cluster.node(self._removed)
        if not node.running:
            self.cluster.start(node)
        others = [n for n in self.members if n is not node]
        error: Exception | None = None
        for _ in range(10):
            leader = find_leader(self.cluster, others, timeout=5.0)
            if leader is None:
                continue
            try:
                if not _is_member(leader, node):
                    _call(leader, "AMBER.CLUSTER", "ADD", node.node_id, node.raft_address)
            except redis.RedisError as exc:
                error = exc
                time.sleep(0.5)
                continue
            self._removed = None
            if record is not None:
                record.detail += f"; re-added via {leader.node_id}"
            return
        raise RuntimeError(f"could not add {node.node_id} back: {error}")

    def heal_all(self) -> None:
        """Undo every fault still in effect: proxies, pauses, kills, clock offsets, a
        removed member."""
        if self.proxies is not None:
            self.proxies.heal()
        self._resume_paused()
        for node in self.members:  # a paused-then-stopped corner: resume is harmless
            self.cluster.resume(node)
        self._restart_killed()
        self._unskew()
        self._rejoin(None)
        if self.cluster.shards > 1:
            self._repair_all()

    def _repair_all(self) -> None:
        """Leave no slot frozen or importing: wait for every group's leader, then repair."""
        for group in self.cluster.groups():
            if find_leader(self.cluster, group, timeout=30.0) is None:
                self.notes.append(f"no leader in {[n.node_id for n in group]} before the repair")
        error: Exception | None = None
        for _ in range(3):
            try:
                left = self.repair()
            except (redis.RedisError, OSError, RuntimeError) as exc:
                error = exc
                time.sleep(1.0)
                continue
            if left:
                self.notes.append(f"after the final repair: {left}")
            return
        code = error_code(error) if error is not None else "?"
        self.notes.append(f"the final repair failed: {code}: {error}")


def _is_member(leader: LocalNode, node: LocalNode) -> bool:
    """Whether ``leader`` lists ``node`` (an ADD whose reply was lost may have worked)."""
    return any(m["id"] == node.node_id for m in status(leader)["members"])


def _call(node: LocalNode, *args: str) -> Any:
    client = resp_client(node, timeout=15.0)
    try:
        return client.execute_command(*args)
    finally:
        client.close()
