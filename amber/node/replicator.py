"""The seam between a node and whatever decides the order of its batches.

A :class:`~amber.node.node.Node` runs the embedded API's calls, the
background jobs and the statistics; a :class:`Replicator` decides the order
in which batches reach the store, makes them durable and applies them. Two
implement it:

- :class:`~amber.node.local_log.LocalLog`: one process. The order is the
  order of ``submit``; the commit pipeline makes each group durable in the
  node's :class:`~amber.persistence.Backend` and applies it.
- :class:`~amber.replication.cluster.Raft`: a cluster member. The order is
  the Raft log's (PySyncObj); a batch is applied on every member once a
  majority holds it.

Both apply to the same :class:`StateMachine` (the store, its watch hub and
the node's listeners), which the node creates and hands to the replicator,
and both answer ``submit`` with a :class:`Completion`: one submitted batch
(or, in a cluster, a read barrier) until its result is known.

Cluster-only abilities are optional capabilities on the protocol:
``status()`` is ``None`` and ``membership()`` is ``None`` for a replicator
that is not in a cluster, so the layers above never ask what kind of
replicator they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from asyncio import _get_running_loop as asyncio_running_loop
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, NamedTuple, Protocol, TypedDict

from ..config import Config
from ..errors import AmberError
from ..store.batch import Batch
from ..store.state import ApplyResult, Store
from ..watch import WatchHub

__all__ = [
    "ClusterStatus",
    "Completion",
    "Job",
    "Membership",
    "Replicator",
    "StateMachine",
    "complete",
]


class Completion:
    """One submitted batch, or a read barrier, until its result is known.

    What a replicator's ``submit`` returns and its ``wait``/``wait_async``
    take. ``done`` is set once, after ``result`` (a write's
    :class:`~amber.store.state.ApplyResult`) or ``error`` (why it failed);
    a barrier has neither a result nor an error. ``wake`` (a sleeping
    thread) and ``future``/``loop`` (an asyncio waiter) are how
    :func:`complete` reaches the one waiting.

    The rest belongs to the replicator that made it: ``seq`` and ``batch``
    (the local log: the log position and the stamped batch to apply),
    ``record`` and ``deadline`` (Raft: the stamped record to propose, None
    for a barrier, and the monotonic time past which its waiter gives up).
    """

    __slots__ = (
        "batch",
        "deadline",
        "done",
        "error",
        "future",
        "loop",
        "record",
        "result",
        "seq",
        "wake",
    )

    def __init__(
        self,
        seq: int = 0,
        batch: Batch | None = None,
        *,
        record: bytes | None = None,
        deadline: float = math.inf,
    ) -> None:
        self.seq = seq
        self.batch = batch
        self.record = record
        self.deadline = deadline
        self.done = False
        self.result: ApplyResult | None = None
        self.error: AmberError | None = None
        #: Set while a writer thread sleeps on this completion.
        self.wake: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def outcome(self) -> ApplyResult:
        """The result of a finished write; raises its error if it failed."""
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _wake_all(futures: list[asyncio.Future[None]]) -> None:
    for future in futures:
        if not future.done():
            future.set_result(None)


def complete(group: Iterable[Completion]) -> None:
    """Mark completions done and wake their waiters.

    Call it under the lock that waiters check ``done`` under, so no wake-up
    is lost. Asyncio waiters are woken directly when this runs in their
    loop, else with one ``call_soon_threadsafe`` per loop for the group.
    """
    elsewhere: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    running = asyncio_running_loop()
    for completion in group:
        completion.done = True
        if completion.wake is not None:
            completion.wake.set()
        future, loop = completion.future, completion.loop
        if future is not None and loop is not None:
            if loop is running:
                _wake(future)
            else:
                elsewhere.setdefault(loop, []).append(future)
    for loop, futures in elsewhere.items():
        # A closed loop has nobody left waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_wake_all, futures)


def _publish_to(listeners: list[Callable[[ApplyResult], None]], result: ApplyResult) -> None:
    for listener in listeners:
        listener(result)


class StateMachine:
    """What a replicator applies batches to: the store, its watch hub, the listeners.

    The node creates it empty and hands it to its replicator, which loads
    it at start (recovery, or a Raft snapshot and journal) and then applies
    every batch with ``store.apply`` under ``store.lock`` and hands each
    result to ``publish``, in order. ``publish`` holds no reference to the
    node, so a closed node is freed at once.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.limits)
        self._listeners: list[Callable[[ApplyResult], None]] = []
        #: Every applied batch, in order, to every listener (on the applying thread).
        self.publish: Callable[[ApplyResult], None] = partial(_publish_to, self._listeners)
        # Registered before recovery so that replaying the log rebuilds the
        # watch history exactly as it was built live.
        self.watch_hub = WatchHub(config)
        self.add_listener(self.watch_hub.publish)

    def add_listener(self, listener: Callable[[ApplyResult], None]) -> None:
        """Call ``listener`` with every applied batch, in order (on the applying thread)."""
        self._listeners.append(listener)

    def close(self) -> None:
        """After the last publish: watchers get it, then ``Closed``; listeners are dropped."""
        self.watch_hub.close()
        self._listeners.clear()


class Job(NamedTuple):
    """A background job a replicator asks its node to run every ``interval_s`` seconds."""

    name: str
    interval_s: float
    run: Callable[[], object]


class ClusterStatus(TypedDict):
    """A cluster member's view, for ``AMBER.CLUSTER`` and ``/v1/cluster``."""

    node_id: str
    state: str
    leader: str | None
    term: int
    commit_index: int
    applied_index: int
    lag: int
    has_quorum: bool
    members: list[dict[str, Any]]
    log_entries: int
    revision: int
    healthy: bool
    failed: str | None


class Membership(Protocol):
    """Changing a cluster's members; each call blocks until the cluster confirms.

    Raises ``UnknownOutcome`` when the confirmation does not come within
    the cluster's timeout and ``Unavailable`` when the change was refused.
    """

    def add_member(self, node_id: str, address: str) -> None:
        """Add a node (started with this cluster as its peers) at ``host:port``."""
        ...

    def remove_member(self, node_id_or_address: str) -> None:
        """Remove a node by id or ``host:port``."""
        ...

    def transfer_leadership(self, node_id: str | None = None) -> None:
        """Hand leadership to ``node_id`` (or the most caught-up follower); call on the leader."""
        ...


class Replicator(Protocol):
    """Decides the order of batches, makes them durable and applies them.

    A replicator is opened on a :class:`StateMachine` and loads it in its
    constructor (recovery). Guarantees every implementation keeps:

    - **Order**: batches are applied in one order on the state machine, and
      one thread's (one connection's) submits are applied in the order
      submitted, each once.
    - **Durability**: ``wait`` returns a write's result only once it is as
      durable as the replicator promises (the local log: the durability
      mode; Raft: held by a majority) and applied here; before that no
      reader of this node sees it.
    - **Threads**: every method is thread-safe; ``wait_async`` never blocks
      the event loop on a cluster round trip or, while flushes are slow, an
      fsync.
    """

    #: Where the batches go, for ``Database`` and stats (``log``, ``sqlite``, ``raft`` …).
    name: str
    #: What recovery repaired at open (a truncated torn tail, …).
    recovery_notes: list[str]
    #: What batches are applied to.
    state: StateMachine

    def submit(self, batch: Batch, body: bytes) -> Completion:
        """Queue an encoded batch; raises at once if writes are refused (closed, failed)."""
        ...

    def wait(self, completion: Completion) -> ApplyResult:
        """Block until the batch is durable and applied here; its result, or raise its error."""
        ...

    async def wait_async(self, completion: Completion) -> ApplyResult:
        """``wait`` for asyncio."""
        ...

    def read_barrier(self) -> None:
        """Return once every write committed anywhere before the call is applied here."""
        ...

    async def aread_barrier(self) -> None:
        """``read_barrier`` for asyncio."""
        ...

    @property
    def is_leader(self) -> bool:
        """Whether this node proposes what one member must propose (TTL expirations)."""
        ...

    def jobs(self) -> list[Job]:
        """Background jobs of the replicator (snapshots, fsync timers) for the node to run."""
        ...

    def snapshot(self) -> int:
        """Snapshot the applied state now; returns the log position it covers."""
        ...

    def stats(self) -> dict[str, Any]:
        """``backend``, ``durability`` and ``pipeline`` counters, for ``Database.stats``."""
        ...

    def status(self) -> ClusterStatus | None:
        """Cluster membership and progress; None for a replicator that is not in a cluster."""
        ...

    def membership(self) -> Membership | None:
        """How to change the cluster's members; None for a replicator that is not in a cluster."""
        ...

    def stop_writes(self) -> None:
        """First step of closing, before the node stops its jobs; idempotent.

        A replicator whose waiting writes may never finish (Raft without a
        quorum) refuses new writes here and answers the waiting ones with
        ``Closed``, so no job is left blocked; one that settles them anyway
        (the local log flushes them in ``close``) does nothing.
        """
        ...

    def close(self) -> None:
        """Refuse new writes, settle the queued ones, release files and sockets; idempotent."""
        ...
