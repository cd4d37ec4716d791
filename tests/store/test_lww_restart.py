"""The hybrid clock never goes backwards across a restart (issue #15).

Found by ``amber chaos --workload eventual`` reasoning about kill after
clock skew: the clock lived only in memory, so a member restarted with a
wall clock behind the stamps it already held (its clock had been ahead, or
it had seen a peer's clock ahead within the bound — up to 60 s by default)
stamped its next writes below them: acknowledged, then lost to the older
state on the member that took them.
"""

from __future__ import annotations

from pathlib import Path

import amber
from amber.node.hlc import HybridClock


def test_a_restarted_member_stamps_past_everything_it_holds(tmp_path: Path) -> None:
    db = amber.open(tmp_path / "db")
    presence = db.table("presence", consistency="eventual")
    clock = db.eventual_store().clock
    assert clock is not None
    clock.offset_ms = 5000  # the wall clock ran 5 s ahead (or a peer's stamps did)
    presence.put("ada", "before")
    presence.put("bob", "x")
    presence.delete("bob")  # the newest stamp is a tombstone's
    newest = db.eventual_store().lww_latest()
    db.close()

    db = amber.open(tmp_path / "db")  # restarted; the wall clock is right again
    try:
        presence = db.table("presence")
        clock = db.eventual_store().clock
        assert clock is not None and clock.offset_ms == 0
        assert clock.now() > newest
        presence.put("ada", "after")  # made after "before": it must win
        assert presence.get("ada") == "after"
    finally:
        db.close()


def test_restore_moves_the_clock_past_a_stamp_however_far_ahead() -> None:
    clock = HybridClock("n1", max_skew_ms=1000, wall=lambda: 100.0)
    far = (100_000 + 50_000, 7, "n2")
    assert not clock.observe(far)  # a remote stamp that far ahead is refused ...
    clock.restore(far)  # ... but one this node already holds is where it resumes
    assert clock.now() == (150_000, 8, "n1")
    clock.restore((1, 0, "n1"))  # never backwards
    assert clock.now() == (150_000, 9, "n1")
