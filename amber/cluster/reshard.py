"""The mover: moves hash slots between Raft groups while clients keep writing.

It talks to one member of each group over RESP (``AMBER.SLOTS``; a member
forwards the changes to its group's leader), so it can run anywhere —
``amber cluster reshard`` and ``amber cluster rebalance`` are this module.
Each step moves one slot range with the protocol in
:mod:`amber.server.commands.slots_admin`: importing → freeze → copy →
assign (target, then source, then the other groups) → evict.

A mover that stops halfway (killed, a group unreachable) leaves slots
frozen or importing; the next run first **repairs**: frozen slots that
another group already serves are given to it, other frozen or importing
slots are cancelled (their owner serves them again). So re-running the
command is always the way forward.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from .slots import SLOTS, Member, ShardState, SlotMap

__all__ = ["Mover", "Move", "plan_rebalance"]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Move:
    """Slots ``first``-``last`` go from group ``source`` to group ``target``."""

    source: str
    target: str
    first: int
    last: int


def _runs(slots: list[int]) -> Iterator[tuple[int, int]]:
    """Contiguous ``(first, last)`` runs of sorted ``slots``."""
    start = prev = -2
    for slot in slots:
        if slot != prev + 1:
            if start >= 0:
                yield start, prev
            start = slot
        prev = slot
    if start >= 0:
        yield start, prev


def plan_rebalance(owners: list[str], groups: list[str]) -> list[Move]:
    """Moves that leave every group with an equal share of slots (±1).

    ``owners[slot]`` is each slot's group. Groups over their share give
    their highest slots to groups under theirs, so most slots stay put.
    """
    share = {
        g: SLOTS // len(groups) + (1 if i < SLOTS % len(groups) else 0)
        for i, g in enumerate(sorted(groups))
    }
    held: dict[str, list[int]] = {g: [] for g in groups}
    for slot, owner in enumerate(owners):
        held.setdefault(owner, []).append(slot)
    spare: list[tuple[int, str]] = []
    for g in sorted(held):
        extra = len(held[g]) - share.get(g, 0)
        if extra > 0:
            spare.extend((slot, g) for slot in held[g][-extra:])
    spare.sort()
    moves: list[Move] = []
    for g in sorted(groups):
        need = share[g] - len(held[g])
        if need <= 0:
            continue
        taken, spare = spare[:need], spare[need:]
        by_source: dict[str, list[int]] = {}
        for slot, source in taken:
            by_source.setdefault(source, []).append(slot)
        for source, slots in sorted(by_source.items()):
            moves.extend(Move(source, g, a, b) for a, b in _runs(slots))
    return moves


@dataclass
class Mover:
    """Moves slots of a sharded cluster reached through ``seed`` (``host:port``)."""

    seed: str
    password: str | None = None
    #: Slots moved per step: the longest a slot is unavailable is one step's copy.
    step: int = 128
    timeout: float = 15.0
    progress: Progress = field(default=lambda _line: None)
    _clients: dict[str, Any] = field(default_factory=dict)
    #: The newest map seen (``states``): where each group's members are.
    _map: SlotMap = field(default_factory=lambda: SlotMap.single("g1", ()))

    # -- talking to groups -----------------------------------------------------------

    def _connect(self, address: str) -> Any:
        """A client (typed Any: redis-py's command methods are untyped)."""
        host, _, port = address.rpartition(":")
        client = redis.Redis(
            host=host, port=int(port), password=self.password, socket_timeout=self.timeout
        )
        client.ping()
        return client

    def _call(self, group: str, *args: Any, members: list[Member] | None = None) -> Any:
        """``AMBER.SLOTS args`` on ``group``, through any member that answers; retried
        (``TRYAGAIN``, a lost connection) until ``timeout``."""
        deadline = time.monotonic() + self.timeout
        error: Exception | None = None
        while time.monotonic() < deadline:
            client = self._clients.get(group)
            try:
                if client is None:
                    client = self._client_for(group, members)
                return client.execute_command("AMBER.SLOTS", *args)
            except redis.ConnectionError as exc:
                self._clients.pop(group, None)
                error = exc
            except redis.ResponseError as exc:
                # redis-py raises TryAgainError with the code cut off the message.
                retry = isinstance(exc, redis.exceptions.TryAgainError)
                if not retry and not str(exc).startswith(("TRYAGAIN", "UNKNOWN")):
                    raise
                error = exc
            time.sleep(0.2)
        raise RuntimeError(f"group {group!r} did not answer AMBER.SLOTS {args[0]}: {error}")

    def _client_for(self, group: str, members: list[Member] | None) -> Any:
        candidates = members or self._map.groups.get(group, ())
        for member in candidates:
            try:
                client = self._connect(f"{member.host}:{member.port}")
            except redis.ConnectionError:
                continue
            self._clients[group] = client
            return client
        raise redis.ConnectionError(f"no member of group {group!r} answers")

    def states(self) -> dict[str, ShardState]:
        """Every group's own state, from the newest map the seed and the groups know."""
        seed = self._connect(self.seed)
        try:
            first = ShardState.from_doc(json.loads(seed.execute_command("AMBER.SLOTS", "GET")))
        finally:
            seed.close()
        self._map = first.map
        states: dict[str, ShardState] = {}
        for group in list(first.map.groups):
            states[group] = ShardState.from_doc(json.loads(self._call(group, "GET")))
            if states[group].map.epoch > self._map.epoch:
                self._map = states[group].map
        for group in self._map.groups:
            if group not in states:
                states[group] = ShardState.from_doc(json.loads(self._call(group, "GET")))
        return states

    # -- moving ------------------------------------------------------------------------

    def owners(self, states: dict[str, ShardState]) -> list[str]:
        """Each slot's group, as the groups themselves say (each knows its own slots)."""
        owners = [""] * SLOTS
        for group, state in states.items():
            for slot in state.owned():
                owners[slot] = group
        return owners

    def epoch(self, states: dict[str, ShardState]) -> int:
        return max(state.map.epoch for state in states.values())

    def repair(self, states: dict[str, ShardState]) -> dict[str, ShardState]:
        """Finish or cancel what an interrupted mover left frozen or importing."""
        changed = False
        # Each ASSIGN needs an epoch newer than its group's: count up from the newest.
        epoch = self.epoch(states)
        for group, state in states.items():
            runs: list[tuple[int, int, str | None]] = []  # first, last, taker
            for slot in sorted(state.frozen):
                taker = next(
                    (
                        g
                        for g, s in states.items()
                        if g != group and slot in s.owned() and slot not in s.frozen
                    ),
                    None,
                )
                if runs and runs[-1][1] == slot - 1 and runs[-1][2] == taker:
                    runs[-1] = (runs[-1][0], slot, taker)
                else:
                    runs.append((slot, slot, taker))
            for first, last, taker in runs:
                if taker is not None:
                    epoch += 1
                    self._call(group, "ASSIGN", first, last, taker, "EPOCH", epoch)
                    self._call(group, "EVICT", first, last)
                    self.progress(f"repaired: slots {first}-{last} given by {group} to {taker}")
                else:
                    self._call(group, "CANCEL", first, last)
                    self.progress(f"repaired: slots {first}-{last} unfrozen in {group}")
                changed = True
            for first, last in _runs(sorted(state.importing)):
                self._call(group, "CANCEL", first, last)
                self._call(group, "EVICT", first, last)  # the partial copy
                self.progress(f"repaired: slots {first}-{last} no longer importing in {group}")
                changed = True
        return self.states() if changed else states

    def move(self, states: dict[str, ShardState], move: Move) -> int:
        """One step (see the module doc); returns the number of keys copied."""
        source, target, first, last = move.source, move.target, move.first, move.last
        self._call(target, "IMPORTING", first, last)
        self._call(source, "FREEZE", first, last)
        copied = 0
        after: list[Any] = []
        while True:
            page = self._call(source, "EXPORT", first, last, *after)
            records = page[1:]
            if records:
                copied += int(self._call(target, "LOAD", *records))
            if not page[0]:
                break
            after = ["AFTER", page[0]]
        epoch = self.epoch(states) + 1
        self._call(target, "ASSIGN", first, last, target, "EPOCH", epoch)
        self._call(source, "ASSIGN", first, last, target, "EPOCH", epoch)
        for group in states:
            if group not in (source, target):
                try:
                    self._call(group, "ASSIGN", first, last, target, "EPOCH", epoch)
                except (RuntimeError, redis.ResponseError) as exc:
                    # Only a hint there: a stale map redirects to the old owner,
                    # which redirects again. Said, not fatal.
                    self.progress(f"group {group} keeps an older map: {exc}")
        self._call(source, "EVICT", first, last)
        for state in (states[source], states[target]):
            states[state.group] = ShardState(
                state.group,
                SlotMap(epoch, state.map.ranges, state.map.groups),
                state.frozen,
                state.importing,
            )
        return copied

    def run(self, moves: list[Move], states: dict[str, ShardState]) -> int:
        """Do ``moves`` in steps of at most ``step`` slots; the keys copied."""
        copied = 0
        for m in moves:
            for first in range(m.first, m.last + 1, self.step):
                last = min(m.last, first + self.step - 1)
                copied += self.move(states, Move(m.source, m.target, first, last))
                self.progress(f"slots {first}-{last}: {m.source} -> {m.target}")
        return copied

    def reshard(self, first: int, last: int, target: str) -> int:
        """Move slots ``first``-``last`` to group ``target``; the keys copied."""
        states = self.repair(self.states())
        if target not in states:
            raise ValueError(f"unknown group {target!r} (groups: {', '.join(sorted(states))})")
        owners = self.owners(states)
        by_source: dict[str, list[int]] = {}
        for slot in range(first, last + 1):
            if owners[slot] != target:
                by_source.setdefault(owners[slot], []).append(slot)
        moves = [
            Move(source, target, a, b)
            for source, slots in sorted(by_source.items())
            for a, b in _runs(slots)
        ]
        return self.run(moves, states)

    def add_group(self, name: str, members: list[Member]) -> None:
        """Add an empty group (its processes already started) to every group's map."""
        states = self.repair(self.states())
        if name in states:
            raise ValueError(f"group {name!r} is already in the map")
        groups = dict(self._map.groups)
        groups[name] = tuple(members)
        epoch = self.epoch(states) + 1
        owners = self.owners(states)
        ranges = tuple(
            (a, b, group)
            for group in sorted(states)
            for a, b in _runs([s for s in range(SLOTS) if owners[s] == group])
        )
        doc = ShardState(name, SlotMap(epoch, tuple(sorted(ranges)), groups)).to_doc()
        payload = json.dumps(doc)
        for group in states:
            self._call(group, "MAP", payload)
        try:
            self._call(name, "MAP", payload, members=members)
        except redis.ResponseError as exc:
            raise ValueError(f"the new group {name!r} refused the map: {exc}") from None

    def rebalance(self) -> int:
        """Even out the slots over every group in the map; the keys copied."""
        states = self.repair(self.states())
        moves = plan_rebalance(self.owners(states), sorted(states))
        return self.run(moves, states)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
