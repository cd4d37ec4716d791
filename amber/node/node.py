"""A node: one process's database — a Store, its Backend, the pipeline, jobs.

The node owns the order of batches (later a Replicator decides it; alone,
the local log does), recovery at start, snapshots and background jobs. The
embedded API (``amber.Database``) and the servers sit on top of it.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
from itertools import chain
from typing import Any

from ..config import Config
from ..errors import Corrupted
from ..persistence import Backend, Recovered
from ..store.batch import Batch, decode_record, encode_body
from ..store.state import ApplyResult, Store
from ..watch import WatchHub
from .pipeline import CommitPipeline, Ticket
from .supervisor import Supervisor

log = logging.getLogger(__name__)

#: Expirations proposed per batch by the TTL sweeper.
SWEEP_BATCH = 1000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Node:
    """Recovers a store from its backend and commits batches to both."""

    def __init__(self, backend: Backend, config: Config, *, jobs: bool = True) -> None:
        self.backend = backend
        self._start_state(config)
        self._snapshot_lock = threading.Lock()
        self._snapshot_seq = 0
        self._synced_seq = 0
        recovered = backend.recover()
        try:
            self.recovery_notes = self._replay(recovered)
        except BaseException:
            backend.close()
            raise
        self.pipeline = CommitPipeline(
            self.store,
            backend,
            config,
            next_seq=self.store.applied_seq + 1,
            on_applied=self._publish,
        )
        self._synced_seq = self.store.applied_seq
        self.supervisor = Supervisor()
        if jobs:
            self.supervisor.every("ttl-sweeper", config.ttl_sweep_ms / 1000, self.sweep_expired)
            self.supervisor.every("snapshotter", 1.0, self._maybe_snapshot)
            if config.durability == "interval":
                self.supervisor.every("wal-fsync", config.interval_ms / 1000, self._sync_if_dirty)

    def _start_state(self, config: Config) -> None:
        """An empty store and its watch hub; a cluster node starts the same way."""
        self.config = config
        self.store = Store(config.limits)
        self._listeners: list[Callable[[ApplyResult], None]] = []
        # Registered before recovery so that replaying the log rebuilds the
        # watch history exactly as it was built live.
        self.watch_hub = WatchHub(config)
        self.add_listener(self.watch_hub.publish)

    # -- recovery -------------------------------------------------------------

    def _replay(self, recovered: Recovered) -> list[str]:
        # Recovery allocates millions of long-lived objects: the cyclic GC
        # would rescan the growing heap again and again (reopen took twice as
        # long). Pause it while loading. (Not gc.freeze(): that is global to
        # the process and would keep every closed database alive for good.)
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._load(recovered)
        finally:
            if paused:
                gc.enable()

    def _load(self, recovered: Recovered) -> list[str]:
        store = self.store
        started = time.perf_counter()
        if recovered.snapshot is not None:
            snap = recovered.snapshot
            store.load_image(self.watch_hub.divert(snap.chunks), snap.last_seq, snap.source)
            self.watch_hub.restore(store.revision)
            self._snapshot_seq = snap.last_seq
        replayed = 0
        with store.lock:
            for seq, payload in recovered.records:
                if seq != store.applied_seq + 1:
                    raise Corrupted(
                        f"log record {seq} follows {store.applied_seq}: records are missing"
                    )
                result = store.apply(seq, decode_record(payload))
                self._publish(result)
                replayed += 1
        notes = list(recovered.notes)
        for note in notes:
            log.warning("recovery: %s", note)
        log.info(
            "recovered revision %d (seq %d, %d log records replayed) in %.2fs",
            store.revision,
            store.applied_seq,
            replayed,
            time.perf_counter() - started,
        )
        return notes

    # -- writing ----------------------------------------------------------------

    def submit(self, batch: Batch, body: bytes | None = None) -> Ticket:
        """Queue a batch; ``body`` is its encoding when the caller already has it."""
        return self.pipeline.submit(batch, encode_body(batch) if body is None else body)

    def commit(self, batch: Batch, body: bytes | None = None) -> ApplyResult:
        """Submit a batch and wait until it is durable and applied."""
        return self.pipeline.wait(self.submit(batch, body))

    async def acommit(self, batch: Batch, body: bytes | None = None) -> ApplyResult:
        """``commit`` for asyncio: the event loop never waits on an fsync."""
        return await self.pipeline.wait_async(self.submit(batch, body))

    def read_barrier(self) -> None:
        """Wait until every write committed before the call is visible here.

        Alone, a node applies a write before acknowledging it, so there is
        nothing to wait for; a cluster node waits for a Raft log barrier.
        """

    async def aread_barrier(self) -> None:
        """``read_barrier`` for asyncio."""

    def cluster_status(self) -> dict[str, Any] | None:
        """Raft membership and progress; None for a node that is not in a cluster."""
        return None

    def add_listener(self, listener: Callable[[ApplyResult], None]) -> None:
        """Call ``listener`` with every applied batch, in order (on the applying thread)."""
        self._listeners.append(listener)

    def _publish(self, result: ApplyResult) -> None:
        for listener in self._listeners:
            listener(result)

    # -- background work ------------------------------------------------------

    def sweep_expired(self) -> int:
        """Propose deletes for expired keys; returns how many were due."""
        with self.store.lock:
            due = self.store.due_expirations(now_ms(), limit=100 * SWEEP_BATCH)
        for i in range(0, len(due), SWEEP_BATCH):
            self.commit(Batch(tuple(due[i : i + SWEEP_BATCH])))
        return len(due)

    def snapshot(self) -> int:
        """Write a snapshot of the applied state; returns the seq it covers.

        Writers are held only for a shallow copy of each table's dict; the
        encoding and I/O run without the store lock.
        """
        with self._snapshot_lock:
            with self.store.lock:
                image = self.store.capture()
            if image.seq == self._snapshot_seq:
                return image.seq
            # The log must be durable up to what the snapshot claims, or a
            # crash could leave a snapshot ahead of a log with a hole after it.
            self.pipeline.sync()
            # After sync() every batch up to image.seq is published to the hub.
            chunks = chain(Store.image_chunks(image), self.watch_hub.image_chunks(image.revision))
            self.backend.write_snapshot(image.seq, chunks)
            self._snapshot_seq = image.seq
            return image.seq

    def _maybe_snapshot(self) -> None:
        if self.backend.log_bytes_since_snapshot() >= self.config.snapshot_wal_bytes:
            self.snapshot()

    def _sync_if_dirty(self) -> None:
        last = self.pipeline.last_seq
        if last > self._synced_seq:
            self._synced_seq = self.pipeline.sync()

    def stats(self) -> dict[str, Any]:
        return {
            "revision": self.store.revision,
            "applied_seq": self.store.applied_seq,
            "backend": self.backend.name,
            "durability": self.config.durability,
            "pipeline": self.pipeline.stats(),
            "jobs": self.supervisor.health(),
            "watch": self.watch_hub.stats(),
        }

    def close(self) -> None:
        """Stop jobs, make every queued write durable, release the backend."""
        self.supervisor.stop()
        try:
            self.pipeline.close()
        finally:
            self.watch_hub.close()  # after the last publish: watchers get it, then Closed
            self.backend.close()
            # Break the node <-> pipeline callback cycle so a closed database
            # (and its whole store) is freed at once, not at the next full GC.
            self.pipeline.detach()
            self._listeners.clear()
