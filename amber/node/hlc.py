"""A hybrid logical clock: the stamps of eventual tables' writes.

A stamp is ``(physical_ms, counter, node)``. ``now()`` follows the wall
clock when it moves forward and counts within a millisecond (or while the
wall clock is behind what was seen), so a node's stamps only grow;
``observe()`` moves the clock past a remote stamp, so a write made after
seeing another node's write is stamped later than it — the causal order is
kept even when the two wall clocks disagree (Kulkarni et al., 2014).

The clock lives in memory: when a node's eventual store is opened again
(a restart) it is moved past every stamp the store holds (``restore``),
so "never goes backwards" holds across restarts too — else a node that had
seen stamps ahead of its wall clock (a peer's clock ahead within the
bound, its own clock set back) would stamp its next writes *below* states
it already holds, and they would lose to them: an acknowledged write
vanishing on the member that took it.

A remote stamp more than ``max_skew_ms`` ahead of this node's wall clock is
refused (not observed, not applied): a member with a clock far in the
future would otherwise win every conflict for as long as its lead lasts,
and drag every clock with it. Refusals are counted for the metrics.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..store.lww import Stamp

__all__ = ["HybridClock"]


class HybridClock:
    """Stamps for one node; thread-safe."""

    def __init__(
        self,
        node: str,
        *,
        max_skew_ms: int = 60_000,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.max_skew_ms = max_skew_ms
        self._wall = wall
        #: Added to the wall clock: lets a test give one member a skewed clock.
        self.offset_ms = 0
        self._lock = threading.Lock()
        self._ms = 0
        self._counter = 0
        #: Remote stamps refused for being too far ahead.
        self.refused = 0

    def physical(self) -> int:
        return int(self._wall() * 1000) + self.offset_ms

    def now(self) -> Stamp:
        """A stamp greater than every stamp this clock made or observed."""
        physical = self.physical()
        with self._lock:
            if physical > self._ms:
                self._ms, self._counter = physical, 0
            else:
                self._counter += 1
            return (self._ms, self._counter, self.node)

    def restore(self, stamp: Stamp) -> None:
        """Move past ``stamp``, one this node already holds (its store's greatest, on open):
        never refused, whatever the wall clock says now."""
        with self._lock:
            self._ms, self._counter = max((self._ms, self._counter), (stamp[0], stamp[1]))

    def observe(self, stamp: Stamp) -> bool:
        """Move past ``stamp`` (a remote write's); False, refused, if it is too far ahead."""
        physical = self.physical()
        if stamp[0] > physical + self.max_skew_ms:
            with self._lock:
                self.refused += 1
            return False
        with self._lock:
            if stamp[0] > self._ms:
                self._ms, self._counter = stamp[0], stamp[1]
            elif stamp[0] == self._ms and stamp[1] > self._counter:
                self._counter = stamp[1]
        return True
