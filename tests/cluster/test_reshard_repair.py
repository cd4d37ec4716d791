"""``Mover.repair`` against groups that keep the rules of ``AMBER.SLOTS``, in memory.

Found by ``amber chaos --shards 2 --nemesis reshard``: a mover killed
between the target's and the source's ASSIGN leaves a whole step's range
frozen at the source; the repair gave it away one slot at a time with the
same epoch, so every slot after the first was refused ("EPOCH e is not newer
than this group's e") and the range stayed frozen (TRYAGAIN) for good.
"""

from __future__ import annotations

from typing import Any

from amber.cluster.reshard import Mover
from amber.cluster.slots import SLOTS, Member, ShardState, SlotMap

HALF = SLOTS // 2
MEMBERS = {"g1": (Member("n1", "h", 1, "master"),), "g2": (Member("n2", "h", 2, "master"),)}


class Groups(Mover):
    """A mover whose groups are ``ShardState``s here; ASSIGN keeps the epoch rule."""

    def __init__(self, states: dict[str, ShardState]) -> None:
        super().__init__(seed="h:1")
        self.groups = states
        self.calls: list[tuple[Any, ...]] = []

    def states(self) -> dict[str, ShardState]:
        return dict(self.groups)

    def _call(self, group: str, *args: Any, members: list[Member] | None = None) -> Any:
        self.calls.append((group, *args))
        state = self.groups[group]
        first, last = int(args[1]), int(args[2])
        wanted = frozenset(range(first, last + 1))
        slot_map = state.map
        if args[0] == "ASSIGN":
            taker, epoch = args[3], int(args[5])
            if epoch <= slot_map.epoch:
                raise RuntimeError(f"EPOCH {epoch} is not newer than this group's {slot_map.epoch}")
            owners = [g for a, b, g in slot_map.ranges for _ in range(a, b + 1)]
            owners[first : last + 1] = [taker] * len(wanted)
            ranges, start = [], 0
            for slot in range(1, SLOTS + 1):
                if slot == SLOTS or owners[slot] != owners[start]:
                    ranges.append((start, slot - 1, owners[start]))
                    start = slot
            slot_map = SlotMap(epoch, tuple(ranges), slot_map.groups)
        self.groups[group] = ShardState(
            group, slot_map, state.frozen - wanted, state.importing - wanted
        )
        return "OK"


def test_a_range_frozen_at_the_source_and_taken_by_the_target_is_given_away_whole() -> None:
    moving = frozenset(range(100, 164))
    # The target took slots 100-163 at epoch 3; the source froze them, still at epoch 2.
    source_map = SlotMap(2, ((0, HALF - 1, "g1"), (HALF, SLOTS - 1, "g2")), MEMBERS)
    target_map = SlotMap(
        3,
        ((0, 99, "g1"), (100, 163, "g2"), (164, HALF - 1, "g1"), (HALF, SLOTS - 1, "g2")),
        MEMBERS,
    )
    mover = Groups({"g1": ShardState("g1", source_map, moving), "g2": ShardState("g2", target_map)})
    states = mover.repair(mover.states())
    assert not states["g1"].frozen and not states["g1"].owned() & moving
    assert moving <= states["g2"].owned()
    assert [c[:3] for c in mover.calls] == [("g1", "ASSIGN", 100), ("g1", "EVICT", 100)]


def test_frozen_slots_nobody_took_are_unfrozen_and_the_rest_given_away() -> None:
    source_map = SlotMap(2, ((0, HALF - 1, "g1"), (HALF, SLOTS - 1, "g2")), MEMBERS)
    target_map = SlotMap(
        3,
        ((0, 99, "g1"), (100, 109, "g2"), (110, HALF - 1, "g1"), (HALF, SLOTS - 1, "g2")),
        MEMBERS,
    )
    frozen = frozenset(range(100, 120))
    mover = Groups({"g1": ShardState("g1", source_map, frozen), "g2": ShardState("g2", target_map)})
    states = mover.repair(mover.states())
    assert not states["g1"].frozen
    assert frozenset(range(110, 120)) <= states["g1"].owned()
    assert frozenset(range(100, 110)) <= states["g2"].owned() - states["g1"].owned()
