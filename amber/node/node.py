"""A node: one process's database — a state machine, its Replicator, the jobs.

The node composes a :class:`~amber.node.replicator.Replicator`, which
decides the order of batches, makes them durable and applies them to the
node's :class:`~amber.node.replicator.StateMachine` (the store, its watch
hub, the listeners): :class:`~amber.node.local_log.LocalLog` alone (the
commit pipeline over a persistence backend), :class:`~amber.replication.cluster.Raft`
in a cluster. The node itself is the same either way: it submits batches
and waits for their :class:`~amber.node.replicator.Completion`, runs the
background jobs (the TTL sweeper, and the replicator's own) under a
supervisor, and gathers statistics. The embedded API (``amber.Database``)
and the servers sit on top of it and talk only to the node.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..config import Config
from ..persistence import Backend
from ..store.batch import Batch, encode_body
from ..store.state import ApplyResult
from .local_log import LocalLog
from .replicator import ClusterStatus, Completion, Membership, Replicator, StateMachine
from .supervisor import Supervisor

log = logging.getLogger(__name__)

__all__ = ["SWEEP_BATCH", "Node", "now_ms"]

#: Expirations proposed per batch by the TTL sweeper.
SWEEP_BATCH = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """Submits batches to its replicator and runs the background jobs; see the module doc."""

    def __init__(self, replicator: Replicator, *, jobs: bool = True) -> None:
        """Run ``replicator`` (already opened, its state machine loaded)."""
        self.replicator = replicator
        state = replicator.state
        self.state = state
        self.config = state.config
        self.store = state.store
        self.watch_hub = state.watch_hub
        self.recovery_notes = replicator.recovery_notes
        self.supervisor = Supervisor()
        if jobs:
            self.supervisor.every(
                "ttl-sweeper", self.config.ttl_sweep_ms / 1000, self.sweep_expired
            )
            for job in replicator.jobs():
                self.supervisor.every(job.name, job.interval_s, job.run)

    @classmethod
    def local(cls, backend: Backend, config: Config, *, jobs: bool = True) -> Node:
        """A single-process node: recover from ``backend`` and commit to it."""
        return cls(LocalLog(StateMachine(config), backend), jobs=jobs)

    # -- writing ----------------------------------------------------------------

    def submit(self, batch: Batch, body: bytes | None = None) -> Completion:
        """Queue a batch; ``body`` is its encoding when the caller already has it."""
        return self.replicator.submit(batch, encode_body(batch) if body is None else body)

    def commit(self, batch: Batch, body: bytes | None = None) -> ApplyResult:
        """Submit a batch and wait until it is durable and applied here."""
        return self.replicator.wait(self.submit(batch, body))

    async def acommit(self, batch: Batch, body: bytes | None = None) -> ApplyResult:
        """``commit`` for asyncio: the event loop never waits on an fsync or the network."""
        return await self.replicator.wait_async(self.submit(batch, body))

    def read_barrier(self) -> None:
        """Wait until every write committed before the call is visible here.

        Alone, a node applies a write before acknowledging it, so there is
        nothing to wait for; a cluster node waits for a Raft log barrier.
        """
        self.replicator.read_barrier()

    async def aread_barrier(self) -> None:
        """``read_barrier`` for asyncio."""
        await self.replicator.aread_barrier()

    def cluster_status(self) -> ClusterStatus | None:
        """Raft membership and progress; None for a node that is not in a cluster."""
        return self.replicator.status()

    def membership(self) -> Membership | None:
        """How to change the cluster's members; None for a node that is not in a cluster."""
        return self.replicator.membership()

    def add_listener(self, listener: Callable[[ApplyResult], None]) -> None:
        """Call ``listener`` with every applied batch, in order (on the applying thread)."""
        self.state.add_listener(listener)

    # -- background work ------------------------------------------------------

    def sweep_expired(self) -> int:
        """Propose deletes for expired keys; returns how many were due.

        In a cluster only the leader proposes them; every member applies
        them from the log.
        """
        if not self.replicator.is_leader:
            return 0
        with self.store.lock:
            due = self.store.due_expirations(now_ms(), limit=100 * SWEEP_BATCH)
        for i in range(0, len(due), SWEEP_BATCH):
            self.commit(Batch(tuple(due[i : i + SWEEP_BATCH])))
        return len(due)

    def snapshot(self) -> int:
        """Snapshot the applied state now; returns the log position it covers."""
        return self.replicator.snapshot()

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "revision": self.store.revision,
            "applied_seq": self.store.applied_seq,
            **self.replicator.stats(),
            "jobs": self.supervisor.health(),
            "watch": self.watch_hub.stats(),
        }
        status = self.replicator.status()
        if status is not None:
            stats["cluster"] = status
        return stats

    def close(self) -> None:
        """Stop jobs, settle every queued write, release the replicator's resources."""
        # A job waiting on a write that cannot finish (a cluster without a
        # quorum) is answered first, so stopping the jobs does not wait on it.
        self.replicator.stop_writes()
        self.supervisor.stop()
        try:
            self.replicator.close()
        finally:
            self.state.close()
