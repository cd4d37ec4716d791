"""The single-process replicator: the commit pipeline over one persistence backend.

The order of batches is the order of ``submit``: the
:class:`~amber.node.pipeline.CommitPipeline` numbers each batch with the
next log sequence number, makes groups durable in the
:class:`~amber.persistence.Backend` (one write and, in ``always`` mode, one
fsync per group) and applies them to the store in that order. At open the
backend's snapshot and log records are replayed into the state machine;
snapshots are written by a background job once the log has grown by
``snapshot_wal_bytes``.

Alone, a node applies a write before acknowledging it, so a read barrier
has nothing to wait for, and the node always leads (it sweeps expired keys).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from itertools import chain
from typing import Any

from ..errors import Corrupted
from ..persistence import Backend, Recovered
from ..store.batch import Batch, decode_record
from ..store.state import ApplyResult, Store
from .pipeline import CommitPipeline
from .replicator import ClusterStatus, Completion, Job, Membership, StateMachine

log = logging.getLogger(__name__)

__all__ = ["LocalLog"]


class LocalLog:
    """A :class:`~amber.node.replicator.Replicator` for one process: see the module doc."""

    def __init__(self, state: StateMachine, backend: Backend) -> None:
        """Recover ``state`` from ``backend`` (closing the backend if recovery fails)."""
        self.state = state
        self.backend = backend
        self.name = backend.name
        self._config = config = state.config
        self._snapshot_lock = threading.Lock()
        self._snapshot_seq = 0
        recovered = backend.recover()
        try:
            self.recovery_notes = self._replay(recovered)
        except BaseException:
            backend.close()
            raise
        store = state.store
        self.pipeline = CommitPipeline(
            store,
            backend,
            config,
            next_seq=store.applied_seq + 1,
            on_applied=state.publish,
        )
        self._synced_seq = store.applied_seq

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
        store, hub, publish = self.state.store, self.state.watch_hub, self.state.publish
        started = time.perf_counter()
        if recovered.snapshot is not None:
            snap = recovered.snapshot
            store.load_image(hub.divert(snap.chunks), snap.last_seq, snap.source)
            hub.restore(store.revision)
            self._snapshot_seq = snap.last_seq
        replayed = 0
        with store.lock:
            for seq, payload in recovered.records:
                if seq != store.applied_seq + 1:
                    raise Corrupted(
                        f"log record {seq} follows {store.applied_seq}: records are missing"
                    )
                result = store.apply(seq, decode_record(payload))
                publish(result)
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

    def submit(self, batch: Batch, body: bytes) -> Completion:
        """Number the batch and append it to the backend's buffer (no I/O)."""
        return self.pipeline.submit(batch, body)

    def wait(self, completion: Completion) -> ApplyResult:
        """Block until the batch is as durable as the mode promises and applied."""
        return self.pipeline.wait(completion)

    async def wait_async(self, completion: Completion) -> ApplyResult:
        """``wait`` for asyncio: the event loop never waits on a slow fsync."""
        return await self.pipeline.wait_async(completion)

    def read_barrier(self) -> None:
        """Nothing to wait for: a write is applied before it is acknowledged."""

    async def aread_barrier(self) -> None:
        """``read_barrier`` for asyncio."""

    @property
    def is_leader(self) -> bool:
        """Alone, this node proposes everything."""
        return True

    def status(self) -> ClusterStatus | None:
        """Not in a cluster."""
        return None

    def membership(self) -> Membership | None:
        """Not in a cluster."""
        return None

    # -- background work ------------------------------------------------------

    def jobs(self) -> list[Job]:
        """The snapshotter, and in ``interval`` mode the timed fsync."""
        jobs = [Job("snapshotter", 1.0, self._maybe_snapshot)]
        if self._config.durability == "interval":
            jobs.append(Job("wal-fsync", self._config.interval_ms / 1000, self._sync_if_dirty))
        return jobs

    def snapshot(self) -> int:
        """Write a snapshot of the applied state; returns the seq it covers.

        Writers are held only for a shallow copy of each table's dict; the
        encoding and I/O run without the store lock.
        """
        store, hub = self.state.store, self.state.watch_hub
        with self._snapshot_lock:
            with store.lock:
                image = store.capture()
            if image.seq == self._snapshot_seq:
                return image.seq
            # The log must be durable up to what the snapshot claims, or a
            # crash could leave a snapshot ahead of a log with a hole after it.
            self.pipeline.sync()
            # After sync() every batch up to image.seq is published to the hub.
            chunks = chain(Store.image_chunks(image), hub.image_chunks(image.revision))
            self.backend.write_snapshot(image.seq, chunks)
            self._snapshot_seq = image.seq
            return image.seq

    def _maybe_snapshot(self) -> None:
        if self.backend.log_bytes_since_snapshot() >= self._config.snapshot_wal_bytes:
            self.snapshot()

    def _sync_if_dirty(self) -> None:
        last = self.pipeline.last_seq
        if last > self._synced_seq:
            self._synced_seq = self.pipeline.sync()

    def stats(self) -> dict[str, Any]:
        return {
            "backend": self.backend.name,
            "durability": self._config.durability,
            "pipeline": self.pipeline.stats(),
        }

    def stop_writes(self) -> None:
        """Nothing to do before the jobs stop: ``close`` makes the queued writes durable."""

    def close(self) -> None:
        """Refuse new writes, make the queued ones durable (and published), release the backend."""
        try:
            self.pipeline.close()
        finally:
            self.backend.close()
            # Break the pipeline's callback to the state machine, so a closed
            # database (and its whole store) is freed at once.
            self.pipeline.detach()
