"""The cluster's replicator: the store replicated through Raft, with PySyncObj as the engine.

:class:`Raft` is the :class:`~amber.node.replicator.Replicator` of a
cluster member: a :class:`~amber.node.node.Node` composes it as it composes
:class:`~amber.node.local_log.LocalLog` alone, and waits on the same
:class:`~amber.node.replicator.Completion` for a write or a read barrier.
Cluster-only abilities are its optional capabilities: ``status()`` and
``membership()`` (add, remove, transfer leadership).

How a write travels
-------------------
``submit`` stamps the batch's record with this node's clock (so TTL expiry is
deterministic on every replica) and queues it. A **proposer** turns the queue
into one Raft entry at a time — every record queued while the previous entry
was in flight goes into the next one (group commit at the Raft level; at most
``MAX_INFLIGHT`` entries in flight). PySyncObj appends the entry on the
leader (a follower forwards it there), replicates it, and once a majority
holds it durably, every node applies it in log order on its Raft thread:
``_apply_entry`` applies each record to the store with the next local
sequence number and publishes the changes to the watch hub. The writer is
answered after its entry is applied *on the node it asked*, so a client
reads its own writes on any node.

Durability
----------
The Raft journal (:class:`~amber.replication.journal.DurableJournal`) is
this node's write-ahead log. It is synced before any message leaves the node
(the transport below) and before the leader counts its own entries towards a
commit (a tick callback), so no node acknowledges an entry or a vote that a
crash could take back. Snapshots are PySyncObj's "full dump": Amber's store
image in the snapshot file format, written when the journal has grown by
``compaction_entries`` entries; the journal is then compacted. A far-behind
or new node is sent the file and installs it.

Reads
-----
Reads are linearizable by default through a **batched log barrier**: a read
joins the next proposal (an empty one if no write is waiting) and proceeds
once that proposal is applied locally. Everything committed before the read
began precedes the barrier in the log, so it is visible. Stale reads skip the
barrier. A barrier costs one Raft round trip, shared by every read that
joined it.

Order
-----
One connection's writes take effect in the order sent (the rule of
:mod:`amber.server.commands.session`), so one node's writes must be applied
in the order they were submitted, each once, whatever happens to the Raft
entries that carry them. Retrying alone cannot promise that: an entry that
failed "certainly not applied" (``DISCARDED`` when a new leader overwrote it,
``NOT_LEADER``) is retried after ``RETRY_DELAY``, but a later entry of the
same node, already in flight or proposed meanwhile, can commit first — and
the retried earlier write then overwrites the later one. So:

- every entry of writes carries ``(origin, seq)``: ``origin`` is random per
  open of this node, ``seq`` counts its entries from 1, and a retry sends the
  same ``seq`` again;
- the **apply side** (every replica, in log order) keeps, per origin, the
  last ``seq`` applied, and applies an entry only if it is the next one. An
  earlier or equal ``seq`` is a duplicate (an earlier copy was applied) and a
  later one leaves a gap: either is skipped, changing nothing. The table is
  replicated state, derived from the log alone (and carried in snapshots),
  so every replica skips exactly the same entries;
- the **proposer** keeps this node's unapplied entries in a window of
  ``MAX_INFLIGHT``, in ``seq`` order, and sends each again until one of its
  copies is applied — after ``RETRY_DELAY`` when a copy failed or was
  skipped, holding every later entry meanwhile, so that they follow it. A
  copy PySyncObj never answers is sent again after ``RESEND_AFTER``.

Because a duplicate is skipped, sending a ``seq`` again is safe even when an
earlier copy's fate is unknown (the leader changed under it): whichever copy
commits first is applied, the others are skipped. The waiter is answered
when the entry is applied *on this node* (its apply sees its own origin),
whichever copy that was.

Holding later proposals alone would not do: an entry proposed before the
failure of an earlier one was known (``MAX_INFLIGHT`` > 1, or sent to
another leader) still commits first. An older member cannot apply an entry
with an origin (nor read a snapshot of format 2): upgrade every member
together.

Failures
--------
A write whose copies all failed "certainly not applied" (no leader yet, not
the leader, replaced by a new leader's entry, skipped for a gap) raises
:class:`~amber.errors.Unavailable` once past ``timeout_s``; its entry is then
emptied and still sent — it fills its ``seq`` so later entries can follow.
Once any copy's fate is unknown, the entry is sent until applied and its
waiter, if ``timeout_s`` passes first, gets
:class:`~amber.errors.UnknownOutcome` (it may yet be applied: before every
later write of this node). Reads simply retry. The table of origins grows
by one small row per open of a node; it is never pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Any

import msgpack
from pysyncobj import SyncObj, SyncObjConf, SyncObjException, replicated
from pysyncobj.config import FAIL_REASON, SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.transport import TCPTransport

from ..config import Config
from ..errors import (
    AmberError,
    Closed,
    Corrupted,
    Locked,
    StorageFailed,
    Unavailable,
    UnknownOutcome,
)
from ..model.codec import unpack
from ..node.node import now_ms
from ..node.replicator import (
    ClusterStatus,
    Completion,
    Job,
    Membership,
    StateMachine,
    complete,
)
from ..persistence.files import FileLayer, LockHeld, OsFiles
from ..persistence.snapshot import read_chunks, write_chunk_file
from ..store.batch import Batch, decode_record, stamp
from ..store.state import ApplyResult, Store, StoreImage
from . import hardening
from .config import ClusterConfig, parse_address
from .journal import DurableJournal

log = logging.getLogger(__name__)

__all__ = ["Raft"]

#: Raft entries one node keeps unapplied at once; later writes gather into the next.
MAX_INFLIGHT = 2
#: Longest wait of one engine tick for network events.
TICK_SECONDS = 0.05
#: Wait before sending again an entry whose copy failed or was skipped.
RETRY_DELAY = 0.05
#: A copy PySyncObj has not answered after this long is taken as lost and sent again.
RESEND_AFTER = 5.0
#: First chunk of a cluster snapshot: ``["r", format, prev entry, last entry, members,
#: origins]`` (format 1: without ``origins``, an empty table).
SNAPSHOT_FORMAT = 2
#: What ``_apply_entry`` returns for an entry it skipped (see "Order").
_DUPLICATE = "duplicate"
_GAP = "gap"
#: Fields of a snapshot's first chunk, by format.
_HEAD_LENGTH = {1: 5, SNAPSHOT_FORMAT: 6}
#: An inbound Raft connection that has not sent a frame that decrypts with the
#: cluster secret within this many seconds is closed (a peer needs one round trip).
AUTH_DEADLINE_S = 3.0
#: At most this many inbound connections may wait to authenticate; the oldest goes.
MAX_UNAUTHENTICATED = 64
#: Connections the kernel queues on the Raft port before PySyncObj accepts them.
LISTEN_BACKLOG = 128
#: The largest frame before authentication: PySyncObj's first frame is a
#: 32-byte key (or, without a secret, a node address), a few hundred bytes.
UNAUTHENTICATED_FRAME_BYTES = 64 * 1024
#: What one record costs in a Raft entry besides its bytes (pickle framing).
RECORD_OVERHEAD = 64
#: PySyncObj's ``appendEntriesBatchSizeBytes`` and snapshot chunk size (its defaults).
RAFT_BATCH_BYTES = 64 * 1024


def max_frame_bytes(max_batch_bytes: int) -> int:
    """The largest Raft frame a peer may legitimately send, with margin.

    A Raft entry holds records of at most ``max_batch_bytes`` in all (the
    proposer splits bigger groups; the database refuses a bigger batch).
    The biggest messages carry one whole entry: an ``apply_command``
    forwarded to the leader, or an ``append_entries`` of entries under
    ``RAFT_BATCH_BYTES`` plus one more (a lone big entry travels in
    ``RAFT_BATCH_BYTES`` chunks, as do snapshots). The entry is pickled
    twice, as a command and inside the message, and pickle protocol 2
    spells each byte >= 0x80 in two: 4 times the records at worst; zlib adds
    0.1 % at worst and Fernet's base64 a third: under 5.4 times. 6 times
    plus 1 MiB leaves margin. (Only an authenticated peer gets this far.)
    """
    return 6 * (max_batch_bytes + 2 * RAFT_BATCH_BYTES) + (1 << 20)


_NOT_APPLIED = {
    FAIL_REASON.QUEUE_FULL,
    FAIL_REASON.MISSING_LEADER,
    FAIL_REASON.DISCARDED,
    FAIL_REASON.NOT_LEADER,
    FAIL_REASON.REQUEST_DENIED,
}
_STATE_NAMES = {0: "follower", 1: "candidate", 2: "leader"}


class _Entry:
    """This node's entry of writes number ``seq``, until one of its copies is applied.

    ``copy`` numbers the copies sent; only the newest one's answer counts.
    ``doubt``: some copy may still be applied (its fate was unknown), so the
    entry's records may no longer change.
    """

    __slots__ = ("copy", "doubt", "due", "out", "sent_at", "seq", "writes")

    def __init__(self, seq: int, writes: list[Completion]) -> None:
        self.seq = seq
        self.writes = writes
        self.copy = 0
        self.out = False
        self.doubt = False
        self.due = 0.0
        self.sent_at = 0.0


class _Transport(TCPTransport):  # type: ignore[misc]
    """PySyncObj's TCP transport, syncing the journal before anything leaves.

    Every message a node sends may reflect its journal (an acknowledged
    entry, a vote): syncing first means a crash can never take back what a
    peer was told. The sync is one flag check when nothing is pending.

    The Raft port is open to whoever reaches the host, so connections carry
    frame limits (:class:`~amber.replication.hardening.FrameLimits`), and an
    inbound connection that has not authenticated within
    ``AUTH_DEADLINE_S`` is closed, as is the oldest when more than
    ``MAX_UNAUTHENTICATED`` wait: holding sockets open costs an attacker
    nothing, and each costs this node a descriptor (when they run out,
    PySyncObj's listener closes for good).
    """

    def __init__(self, syncObj: Any, selfNode: Any, otherNodes: Any) -> None:
        #: Connections refused so far, and when the next may be logged.
        self.amber_refused = 0
        self._next_note = 0.0
        #: Node -> chunks of a big entry waiting for their last one (see ``send``).
        self._held: dict[Any, list[dict[str, Any]]] = {}
        super().__init__(syncObj, selfNode, otherNodes)

    def send(self, node: Any, message: Any) -> bool:
        self._syncObj.amber_journal.sync()
        if type(message) is dict and message.get("transmission") is not None:
            if message["transmission"] == "start":
                self.flush_transmissions(node)
            self._held.setdefault(node, []).append(message)
            return True  # PySyncObj's loop checks the connection, not this
        if self._held:
            self.flush_transmissions(node)
        return bool(super().send(node, message))

    def flush_transmissions(self, node: Any = None) -> None:
        """Send the held chunks of one big entry, labelled by their real position.

        PySyncObj sends an entry larger than ``appendEntriesBatchSizeBytes``
        in chunks of its pickle and labels as ``finish`` every chunk past
        the entry's *command* length; the pickle is longer (protocol 2
        writes each byte >= 0x80 as two), so for a value of non-ASCII text
        the follower unpickled a cut entry and replication stopped for good.
        The chunks of one entry are sent in one loop, so they are held here
        and sent, in order, once the entry's last chunk is known: before the
        next other message to that node, or when the loop ends
        (``_Engine._SyncObj__sendAppendEntries``).
        """
        for target in [node] if node is not None else list(self._held):
            chunks = self._held.pop(target, None)
            if not chunks:
                continue
            last = len(chunks) - 1
            for index, chunk in enumerate(chunks):
                chunk["transmission"] = (
                    "start" if index == 0 else "finish" if index == last else "process"
                )
                super().send(target, chunk)

    def _maybeBind(self) -> None:
        """PySyncObj's bind, with a listen backlog of ``LISTEN_BACKLOG`` instead of 5.

        With 5, a burst of connections (an attack, or many clients of the
        utility port) fills the queue and a peer's connect waits for the
        kernel's SYN retry, a second or more.
        """
        was_ready = self._ready
        super()._maybeBind()
        if self._ready and not was_ready:
            listener = getattr(self._server, "_TcpServer__socket", None)
            if listener is not None:
                listener.listen(LISTEN_BACKLOG)

    def _limits(self) -> hardening.FrameLimits:
        limits: hardening.FrameLimits = self._syncObj.amber_frame_limits
        return limits

    def addNode(self, node: Any) -> None:
        super().addNode(node)
        conn = self._connections.get(node)
        if isinstance(conn, hardening.Connection):
            limits = self._limits()
            if not self._syncObj.encryptor:
                # Without a secret, the peer we dial may send a full entry first.
                limits = hardening.FrameLimits(limits.authenticated, limits.authenticated)
            conn.frame_limits = limits

    def _onNewIncomingConnection(self, conn: Any) -> None:
        super()._onNewIncomingConnection(conn)
        conn.frame_limits = self._limits()
        conn.amber_opened = time.monotonic()
        waiting = [c for c in self._unknownConnections if not c.authenticated]
        if len(waiting) > MAX_UNAUTHENTICATED:
            oldest = min(waiting, key=lambda c: getattr(c, "amber_opened", 0.0))
            self._drop(oldest, f"more than {MAX_UNAUTHENTICATED} connections wait to authenticate")

    def _onTick(self) -> None:
        super()._onTick()
        if not self._unknownConnections:
            return
        cutoff = time.monotonic() - AUTH_DEADLINE_S
        for conn in list(self._unknownConnections):
            if not conn.authenticated and getattr(conn, "amber_opened", cutoff) < cutoff:
                self._drop(conn, f"no authenticated frame within {AUTH_DEADLINE_S:g} s")

    def _onDisconnected(self, conn: Any) -> None:
        reason = getattr(conn, "refused", None)
        if reason:
            conn.refused = None
            self._note(f"closed a raft connection: {reason}")
        super()._onDisconnected(conn)

    def _drop(self, conn: Any, reason: str) -> None:
        conn.refused = reason
        conn.disconnect()
        self._unknownConnections.discard(conn)

    def _note(self, message: str) -> None:
        """Log refused connections, at most one line per 10 s (an attack would flood the log)."""
        now = time.monotonic()
        self.amber_refused += 1
        if now >= self._next_note:
            self._next_note = now + 10.0
            log.warning("%s (%d refused so far)", message, self.amber_refused)


class _Engine(SyncObj):  # type: ignore[misc]
    """The SyncObj with Amber's one replicated command: apply a list of records."""

    def __init__(
        self,
        owner: Raft,
        journal: DurableJournal,
        address: str,
        peers: list[str],
        conf: SyncObjConf,
    ) -> None:
        self.amber_owner = owner
        self.amber_journal = journal
        self.amber_frame_limits = hardening.FrameLimits(
            UNAUTHENTICATED_FRAME_BYTES, max_frame_bytes(owner.config.limits.max_batch_bytes)
        )
        super().__init__(address, peers, conf, transportClass=_Transport)

    def _SyncObj__sendAppendEntries(self) -> None:
        """PySyncObj's, then the held chunks of a big entry go out (see ``_Transport.send``)."""
        super()._SyncObj__sendAppendEntries()
        self._SyncObj__transport.flush_transmissions()

    @replicated  # type: ignore[untyped-decorator]
    def amber_apply(
        self, records: list[bytes], origin: tuple[bytes, int] | None = None
    ) -> list[ApplyResult] | str:
        # ``origin`` is absent from barriers and from entries of older versions.
        return self.amber_owner._apply_entry(records, origin)


class Raft:
    """A :class:`~amber.node.replicator.Replicator` whose order of batches comes from Raft.

    Opening it loads ``state`` from this member's snapshot and journal in
    ``folder`` (locked while open) and joins the cluster.
    """

    def __init__(
        self,
        state: StateMachine,
        folder: str | os.PathLike[str],
        cluster: ClusterConfig,
        *,
        files: FileLayer | None = None,
    ) -> None:
        hardening.install()
        self.cluster = cluster
        self.name = "raft"
        self.state = state
        self.config: Config = state.config
        self.store = state.store
        self.watch_hub = state.watch_hub
        self._publish = state.publish
        self.recovery_notes: list[str] = []
        self._files = files or OsFiles()
        self._folder = os.fspath(folder)
        raft_dir = os.path.join(self._folder, "raft")
        self._files.makedirs(raft_dir)
        try:
            self._folder_lock = self._files.lock(
                os.path.join(self._folder, "LOCK"), f"pid {os.getpid()}\n"
            )
        except LockHeld as exc:
            raise Locked(f"{self._folder} is in use by another process ({exc.owner})") from exc
        self._dump_path = os.path.join(raft_dir, "snapshot.amber")
        #: The background snapshot write: its thread and what to tell PySyncObj.
        self._dump_guard = hardening.guard_dump(self._dump_path)
        self._dump_job: threading.Thread | None = None
        self._dump_state = SERIALIZER_STATE.NOT_SERIALIZING
        self._lock = threading.Lock()
        #: Held while entries are built and handed to PySyncObj, so they reach it in order.
        self._send_lock = threading.RLock()
        self._queue: list[Completion] = []
        self._raft_calls: list[Callable[[], None]] = []
        #: This open's origin, its next entry's seq, its unapplied entries (see "Order").
        self._origin = os.urandom(8)
        self._next_seq = 1
        self._window: dict[int, _Entry] = {}
        #: Barrier-only entries in flight: number -> (sent at, their reads). One
        #: PySyncObj never answers is dropped after RESEND_AFTER, its reads queued again.
        self._barriers_out: dict[int, tuple[float, list[Completion]]] = {}
        self._barrier_number = 0
        #: Replicated: the last seq applied per origin (Raft thread, under the store lock).
        self._origins: dict[bytes, int] = {}
        self._last_time = 0
        self._closed = False
        #: Set by ``close`` once the engine is being stopped (``_closed`` comes first).
        self._shut = False
        self._failed: AmberError | None = None
        self._preloaded: tuple[Any, ...] | None = None
        self._addresses = {address: name for name, address in cluster.peers.items()}
        self._addresses[cluster.raft_address] = cluster.node_id
        self.entries = 0
        self.barriers = 0
        self.skipped = 0
        try:
            self.journal = DurableJournal(os.path.join(raft_dir, "journal"), self._files)
            self.recovery_notes.extend(self.journal.notes)
            self._load_snapshot_at_open()
            try:
                self._engine = _Engine(
                    self,
                    self.journal,
                    cluster.raft_address,
                    list(cluster.peers.values()),
                    self._conf(),
                )
            except SyncObjException as exc:
                raise OSError(f"cannot bind the raft port {cluster.raft_address}: {exc}") from exc
            self._engine.addOnTickCallback(self.journal.sync)
            self._engine.addOnTickCallback(self._run_raft_calls)
            self._engine.addOnTickCallback(self._retry_due)
            self._ticking = True
            self._ticker = threading.Thread(
                target=self._tick_loop, name=f"amber-raft-{cluster.node_id}", daemon=True
            )
            self._ticker.start()
            self._wait_local_replay()
        except BaseException:
            self._release()
            raise

    def _conf(self) -> SyncObjConf:
        c = self.cluster
        return SyncObjConf(
            password=c.secret or None,
            # PySyncObj binds every address unless told otherwise.
            bindAddress=c.bind_address,
            appendEntriesBatchSizeBytes=RAFT_BATCH_BYTES,
            logCompactionBatchSize=RAFT_BATCH_BYTES,
            # Amber's own thread ticks the engine: PySyncObj's stops with the
            # thread that created it (an executor thread, in the server).
            autoTick=False,
            maxBindRetries=3,
            # Send each entry at once instead of on the 50 ms timer: commits
            # follow events, not ticks (PySyncObj's ~100 ms per sync write).
            appendEntriesUseBatch=False,
            dynamicMembershipChange=True,
            journalFile=self.journal,
            fullDumpFile=self._dump_path,
            serializer=self._serialize,
            serializeChecker=self._dump_progress,
            deserializer=self._deserialize,
            logCompactionMinEntries=c.compaction_entries,
            logCompactionMinTime=c.compaction_seconds,
            connectionRetryTime=0.5,
            leaderFallbackTimeout=3.0,
            useFork=False,
        )

    def _tick_loop(self) -> None:
        """Run the engine: each tick waits for a socket event or 50 ms at most."""
        engine = self._engine
        while self._ticking:
            try:
                engine.doTick(TICK_SECONDS)
            except Exception:
                log.exception("raft tick failed")
                time.sleep(TICK_SECONDS)

    def _release(self) -> None:
        hardening.unguard_dump(self._dump_guard)
        with contextlib.suppress(Exception):
            self.journal._destroy()
        self._folder_lock.release()

    # -- recovery -----------------------------------------------------------------

    def _load_snapshot_at_open(self) -> None:
        """Load and verify the snapshot before PySyncObj starts, and align the journal to it.

        PySyncObj would load it on its first tick, but it swallows every load
        error (a damaged snapshot would silently replay from an empty
        store), and it clears the whole journal when the journal does not
        start exactly at the snapshot — which it does not after a crash
        between writing a snapshot and compacting the journal: entries this
        node acknowledged would vanish. So: verify here (``Corrupted`` stops
        the start), then compact the journal up to the snapshot ourselves.
        """
        if not self._files.exists(self._dump_path):
            return
        meta = self._install(self._dump_path, live=False)
        self._preloaded = meta
        last, prev = meta[0], meta[1]
        journal = self.journal
        if len(journal) and journal[0][1] <= prev[1] <= journal[-1][1]:
            position = prev[1] - journal[0][1]
            if journal[position] == prev and position > 0:
                journal.deleteEntriesTo(position)
        log.info(
            "recovered snapshot at raft index %d (revision %d, seq %d)",
            last[1],
            self.store.revision,
            self.store.applied_seq,
        )

    def _wait_local_replay(self) -> None:
        """Wait until the journal's committed entries are applied (bounded), so reads start warm."""
        target = self.journal.getRaftCommitIndex()
        deadline = time.monotonic() + 60
        while self._engine.raftLastApplied < target and time.monotonic() < deadline:
            time.sleep(0.005)

    def _install(self, path: str, *, live: bool) -> tuple[Any, ...]:
        """Verify a snapshot file, then load it into the store; returns (last, prev, members)."""
        hint = f" (cluster snapshot {path})"
        for _ in read_chunks(self._files, path, None, hint):
            pass  # verify every frame before touching the store
        chunks = read_chunks(self._files, path, None, hint)
        try:
            head = msgpack.unpackb(next(chunks))
        except (ValueError, TypeError, StopIteration) as exc:
            raise Corrupted(f"cluster snapshot head cannot be read: {exc}{hint}", path) from exc
        if (
            not isinstance(head, list)
            or len(head) < 2
            or head[0] != "r"
            or _HEAD_LENGTH.get(head[1]) != len(head)
        ):
            raise Corrupted(f"not a cluster snapshot (header {head[:2]!r}){hint}", path)
        prev = (bytes(head[2][0]), head[2][1], head[2][2])
        last = (bytes(head[3][0]), head[3][1], head[3][2])
        members = [TCPNode(address) for address in head[4]]
        origins = {bytes(origin): int(seq) for origin, seq in (head[5] if len(head) > 5 else [])}
        store = self.store
        with store.lock:
            body: Iterator[bytes] = self.watch_hub.divert(chunks)
            first = next(body)
            seq = unpack(first)[2]
            if live:
                store.reset()
            store.load_image(chain([first], body), seq, path)
            self._origins = origins
        if live:
            self.watch_hub.reinstall(store.revision)
        else:
            self.watch_hub.restore(store.revision)
        return (last, prev, members)

    def _serialize(self, path: str, data: tuple[Any, ...]) -> None:
        """PySyncObj's log compaction: the store image as of the last applied entry.

        Called on the Raft thread, where entries are applied, so the image
        captured here (a shallow copy, milliseconds) is exactly the state
        after ``last``. Encoding and writing it — seconds for a large store,
        which would hold up heartbeats — run on a thread of their own;
        ``_dump_progress`` tells PySyncObj when the file is durable, and only
        then does it compact the journal.
        """
        last, prev, members = data
        with self.store.lock:
            image = self.store.capture()
            origins = sorted(self._origins.items())
        # Raft entries carry bytes, which Amber's value codec refuses: plain msgpack.
        head = msgpack.packb(
            [
                "r",
                SNAPSHOT_FORMAT,
                [prev[0], prev[1], prev[2]],
                [last[0], last[1], last[2]],
                sorted(node.address for node in members),
                [[origin, seq] for origin, seq in origins],
            ]
        )
        self._dump_state = SERIALIZER_STATE.SERIALIZING
        self._dump_job = threading.Thread(
            target=self._write_dump,
            args=(head, image, self._dump_guard.generation),
            name=f"amber-snapshot-{self.cluster.node_id}",
            daemon=True,
        )
        self._dump_job.start()

    def _write_dump(self, head: bytes, image: StoreImage, generation: int) -> None:
        """Write the snapshot next to the live one, then rename it into place."""
        path = self._dump_path + ".writing"
        guard = self._dump_guard
        try:
            chunks = chain(
                [head], Store.image_chunks(image), self.watch_hub.image_chunks(image.revision)
            )
            write_chunk_file(self._files, path, image.seq, chunks)
            with guard.lock:
                if guard.generation != generation:
                    # A leader's newer snapshot was installed meanwhile: keep it.
                    self._files.remove(path)
                    self._dump_state = SERIALIZER_STATE.FAILED
                    return
                self._files.rename(path, self._dump_path)
                self._files.fsync_dir(os.path.dirname(self._dump_path))
            self._dump_state = SERIALIZER_STATE.SUCCESS
        except Exception:
            log.exception("writing the snapshot failed; the journal is not compacted")
            self._dump_state = SERIALIZER_STATE.FAILED

    def _dump_progress(self) -> int:
        """PySyncObj's ``serializeChecker`` (Raft thread): where the background write is."""
        state = self._dump_state
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._dump_state = SERIALIZER_STATE.NOT_SERIALIZING
        return int(state)

    def _deserialize(self, path: str) -> tuple[Any, ...]:
        preloaded, self._preloaded = self._preloaded, None
        if preloaded is not None:
            return preloaded
        try:
            # A leader's snapshot replaces this (far behind) replica's state.
            return self._install(path, live=True)
        except Exception as exc:
            log.critical("installing the leader's snapshot failed; this node stops: %s", exc)
            self._failed = StorageFailed(f"installing a snapshot failed: {exc}")
            raise

    # -- applying (the Raft thread) ---------------------------------------------------

    def _apply_entry(
        self, records: list[bytes], origin: tuple[bytes, int] | None = None
    ) -> list[ApplyResult] | str:
        """Apply one entry's records, unless its ``(origin, seq)`` is not the next one.

        Whether an entry is skipped depends only on the log before it, so
        every replica skips the same ones (module doc, "Order").
        """
        store = self.store
        results: list[ApplyResult] = []
        mine = 0
        try:
            with store.lock:
                if origin is not None:
                    source, seq = bytes(origin[0]), int(origin[1])
                    last = self._origins.get(source, 0)
                    if seq != last + 1:
                        self.skipped += 1
                        return _DUPLICATE if seq <= last else _GAP
                    self._origins[source] = seq
                    if source == self._origin:
                        mine = seq
                for record in records:
                    results.append(store.apply(store.applied_seq + 1, decode_record(record)))
        except Exception as exc:
            # The replicas agree on the log; a record this node cannot apply is
            # a bug or damage here. Stop rather than diverge.
            log.critical("applying a replicated entry failed; this node stops: %r", exc)
            self._failed = StorageFailed(f"applying a replicated entry failed: {exc!r}")
            raise
        self.entries += 1
        for result in results:
            self._publish(result)
        if mine:
            self._applied_here(mine, results)
        return results

    def _applied_here(self, seq: int, results: list[ApplyResult]) -> None:
        """One of this node's entries was applied (whichever copy): answer its writers."""
        with self._lock:
            entry = self._window.pop(seq, None)
            if entry is None:
                return
            for pending, result in zip(entry.writes, results, strict=False):
                pending.result = result
            self._finish(entry.writes)
        self._propose()

    # -- proposing ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise Closed("the database is closed")

    def submit(self, batch: Batch, body: bytes) -> Completion:
        """Queue an encoded write for the next Raft entry."""
        with self._lock:
            self._check_open()
            now = max(now_ms(), self._last_time)
            self._last_time = now
            pending = Completion(
                record=stamp(now, body), deadline=time.monotonic() + self.cluster.timeout_s
            )
            self._queue.append(pending)
        self._propose()
        return pending

    def _barrier(self) -> Completion:
        with self._lock:
            self._check_open()
            pending = Completion(deadline=time.monotonic() + self.cluster.timeout_s)
            self._queue.append(pending)
        self._propose()
        return pending

    def _propose(self) -> None:
        """Send what is due, in seq order: entries to send again, then the queue as new ones.

        An entry waiting out ``RETRY_DELAY`` holds every later one (they would
        only be skipped for the gap) and the queue. The queue's head becomes a
        new entry (``_take_group``) while fewer than ``MAX_INFLIGHT`` are unapplied.
        """
        with self._send_lock:
            sends: list[tuple[_Entry | None, int, list[bytes], list[Completion]]] = []
            with self._lock:
                if self._closed:
                    return
                now = time.monotonic()
                held = False
                for entry in self._window.values():
                    if entry.out:
                        if now - entry.sent_at < RESEND_AFTER:
                            continue
                        entry.doubt = True  # PySyncObj lost it, or it is still on its way
                    elif now < entry.due:
                        held = True
                        break
                    sends.append((entry, *self._send_copy(entry, now), []))
                for number, (sent_at, reads) in list(self._barriers_out.items()):
                    if now - sent_at >= RESEND_AFTER:
                        del self._barriers_out[number]  # its late answer is ignored
                        self._queue[:0] = reads
                while (
                    not held
                    and self._queue
                    and len(self._window) + len(self._barriers_out) < MAX_INFLIGHT
                ):  # bounded: each turn fills one of the MAX_INFLIGHT places
                    group = self._take_group()
                    writes = [p for p in group if p.record is not None]
                    reads = [p for p in group if p.record is None]
                    if writes:
                        entry = _Entry(self._next_seq, writes)
                        self._next_seq += 1
                        self._window[entry.seq] = entry
                        sends.append((entry, *self._send_copy(entry, now), reads))
                    else:
                        self._barrier_number += 1
                        self._barriers_out[self._barrier_number] = (now, reads)
                        sends.append((None, self._barrier_number, [], reads))
            for sent, copy, records, reads in sends:
                callback = functools.partial(self._proposed, sent, copy, reads)
                if sent is None:
                    self.barriers += 1
                    self._engine.amber_apply([], callback=callback)
                else:
                    self._engine.amber_apply(records, (self._origin, sent.seq), callback=callback)

    def _take_group(self) -> list[Completion]:
        """The queue's head up to ``max_batch_bytes`` of records (at least one); lock held.

        Bounds a Raft entry, hence the largest frame a peer sends
        (:func:`max_frame_bytes`).
        """
        budget = self.config.limits.max_batch_bytes
        size = 0
        count = 0
        for pending in self._queue:
            cost = RECORD_OVERHEAD + (len(pending.record) if pending.record is not None else 0)
            if count and size + cost > budget:
                break
            size += cost
            count += 1
        group, self._queue = self._queue[:count], self._queue[count:]
        return group

    @staticmethod
    def _send_copy(entry: _Entry, now: float) -> tuple[int, list[bytes]]:
        """Mark a new copy of ``entry`` sent (lock held); returns its number and records."""
        entry.copy += 1
        entry.out = True
        entry.sent_at = now
        return entry.copy, [p.record for p in entry.writes if p.record is not None]

    def _retry_due(self) -> None:
        """Tick callback: send the entries whose retry delay is over (or whose copy was lost)."""
        if self._window or self._barriers_out:
            self._propose()

    def _proposed(
        self,
        entry: _Entry | None,
        copy: int,
        reads: list[Completion],
        outcome: Any,
        error: int,
    ) -> None:
        """PySyncObj's callback (Raft thread) for one copy: applied, skipped, or failed.

        ``copy`` numbers the copy (of ``entry``, or the barrier-only entry).

        An applied entry was answered already by ``_applied_here``. Otherwise
        it is sent again after ``RETRY_DELAY``, unless its writers are past
        their deadline and no copy may still be applied: they get
        ``Unavailable`` and the entry, emptied, still fills its seq.
        """
        now = time.monotonic()
        retry: list[Completion] = []
        finished: list[Completion] = []
        stopped = self._failed is not None or self._closed
        if entry is None:
            with self._lock:
                if self._barriers_out.pop(copy, None) is None:
                    return  # taken as lost: its reads were queued again
        for pending in reads:
            if error == FAIL_REASON.SUCCESS:
                finished.append(pending)  # an entry after the read began was applied here
            elif now < pending.deadline and not stopped:
                retry.append(pending)
            else:
                pending.error = self._unavailable(error)
                finished.append(pending)
        with self._lock:
            if entry is not None and entry.copy == copy and self._window.get(entry.seq) is entry:
                entry.out = False
                if error == FAIL_REASON.SUCCESS and outcome == _DUPLICATE:
                    # Applied before, but not through _apply_entry here: this node
                    # installed a snapshot that holds it. Its result is not known.
                    del self._window[entry.seq]
                    for pending in entry.writes:
                        pending.error = UnknownOutcome(
                            "the write was applied while this node caught up from a "
                            "snapshot; its result is not known"
                        )
                    finished.extend(entry.writes)
                else:
                    if error != FAIL_REASON.SUCCESS and error not in _NOT_APPLIED:
                        entry.doubt = True
                    entry.due = now + RETRY_DELAY
                    if stopped or not entry.doubt:
                        expired = [p for p in entry.writes if stopped or now >= p.deadline]
                        for pending in expired:
                            pending.error = (
                                UnknownOutcome(f"node {self.cluster.node_id} stopped")
                                if entry.doubt
                                else self._unavailable(error)
                            )
                        finished.extend(expired)
                        entry.writes = [p for p in entry.writes if p not in expired]
            self._finish(finished)
        if retry:
            timer = threading.Timer(RETRY_DELAY, self._requeue, (retry,))
            timer.daemon = True
            timer.start()
        self._propose()

    def _unavailable(self, error: int) -> Unavailable:
        return Unavailable(
            f"the cluster has no leader or quorum reachable from node "
            f"{self.cluster.node_id} (raft: {_fail_name(error)}); nothing was applied"
        )

    def _requeue(self, group: list[Completion]) -> None:
        with self._lock:
            if self._closed:
                for pending in group:
                    pending.error = Closed("the database is closed")
                self._finish(group)
                return
            self._queue[:0] = group
        self._propose()

    def _finish(self, group: list[Completion]) -> None:
        """Mark done and wake waiters (lock held)."""
        complete(group)

    # -- waiting -----------------------------------------------------------------------

    def _wait(self, pending: Completion) -> None:
        with self._lock:
            if not pending.done:
                pending.wake = threading.Event()
        if pending.wake is not None:
            pending.wake.wait(max(0.0, pending.deadline - time.monotonic()))
        self._raise_unfinished(pending)

    async def _wait_async(self, pending: Completion) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            armed = not pending.done
            if armed:
                pending.future, pending.loop = future, loop
        if armed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, max(0.0, pending.deadline - time.monotonic()))
        self._raise_unfinished(pending)

    def _raise_unfinished(self, pending: Completion) -> None:
        if not pending.done:
            if pending.record is None:
                raise Unavailable(
                    f"no quorum confirmed a read within {self.cluster.timeout_s}s on node "
                    f"{self.cluster.node_id}"
                )
            raise UnknownOutcome(
                f"the write was not confirmed within {self.cluster.timeout_s}s on node "
                f"{self.cluster.node_id}; it may still be applied"
            )
        if pending.error is not None:
            raise pending.error

    def wait(self, completion: Completion) -> ApplyResult:
        """Return the write's result once a majority holds it and it is applied here.

        ``UnknownOutcome`` when that is not known within ``timeout_s``.
        """
        self._wait(completion)
        return completion.outcome()

    async def wait_async(self, completion: Completion) -> ApplyResult:
        """``wait`` for asyncio."""
        await self._wait_async(completion)
        return completion.outcome()

    def read_barrier(self) -> None:
        """Return once every write committed before this call is applied on this node."""
        self._wait(self._barrier())

    async def aread_barrier(self) -> None:
        """``read_barrier`` for asyncio."""
        await self._wait_async(self._barrier())

    # -- background work --------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """None: PySyncObj compacts its journal itself (see ``_serialize``)."""
        return []

    def snapshot(self) -> int:
        """Ask PySyncObj to compact now (it snapshots on its thread); returns the applied seq."""
        self._engine.forceLogCompaction()
        return self.store.applied_seq

    # -- cluster ------------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Whether this member leads: only the leader proposes TTL expirations."""
        return bool(self._engine._isLeader())

    def _name(self, node: Any) -> str | None:
        if node is None:
            return None
        address = node.address if hasattr(node, "address") else str(node)
        return self._addresses.get(address, address)

    def membership(self) -> Membership:
        """This member changes the cluster's members itself."""
        return self

    def status(self) -> ClusterStatus:
        """Members, leader, term, indexes and health, for ``AMBER.CLUSTER`` and ``/v1/cluster``."""
        engine = self._engine
        raw = engine.getStatus()
        members = [
            {
                "id": self.cluster.node_id,
                "address": self.cluster.raft_address,
                "self": True,
                "connected": True,
            }
        ]
        for node in sorted(engine.otherNodes, key=lambda n: n.address):
            members.append(
                {
                    "id": self._name(node),
                    "address": node.address,
                    "self": False,
                    "connected": bool(engine.isNodeConnected(node)),
                    "match_index": raw.get(f"match_idx_server_{node.id}"),
                }
            )
        commit = int(raw["commit_idx"])
        applied = int(raw["last_applied"])
        return {
            "node_id": self.cluster.node_id,
            "state": _STATE_NAMES.get(int(raw["state"]), str(raw["state"])),
            "leader": self._name(raw["leader"]),
            "term": int(raw["raft_term"]),
            "commit_index": commit,
            "applied_index": applied,
            "lag": max(0, commit - applied),
            "has_quorum": bool(raw["has_quorum"]),
            "members": members,
            "log_entries": int(raw["log_len"]),
            "revision": self.store.revision,
            "healthy": self._failed is None and bool(raw["has_quorum"]),
            "failed": str(self._failed) if self._failed else None,
        }

    def _change(self, what: str, call: Callable[[Callable[[Any, int], None]], None]) -> None:
        """Run a PySyncObj cluster call and wait for its callback."""
        done = threading.Event()
        outcome: list[int] = []

        def callback(_result: Any, error: int) -> None:
            outcome.append(error)
            done.set()

        call(callback)
        if not done.wait(self.cluster.timeout_s):
            raise UnknownOutcome(f"the cluster change ({what}) was not confirmed in time")
        if outcome[0] != FAIL_REASON.SUCCESS:
            raise Unavailable(f"the cluster change ({what}) failed: {_fail_name(outcome[0])}")

    def add_member(self, node_id: str, address: str) -> None:
        """Add a node (it must be started with this cluster as its peers)."""
        parse_address(address)
        self._change(
            f"add {node_id} at {address}", lambda cb: self._engine.addNodeToCluster(address, cb)
        )
        self._addresses[address] = node_id

    def remove_member(self, node_id_or_address: str) -> None:
        """Remove a node by id or address."""
        address = next(
            (a for a, name in self._addresses.items() if name == node_id_or_address),
            node_id_or_address,
        )
        parse_address(address)
        self._change(
            f"remove {address}", lambda cb: self._engine.removeNodeFromCluster(address, cb)
        )

    def transfer_leadership(self, node_id: str | None = None) -> None:
        """Hand leadership to ``node_id`` (or the most caught-up follower); call on the leader.

        PySyncObj refuses while the target lacks the leader's last entry (a
        follower is usually one round trip behind), so a refusal is retried
        until the timeout. The call touches the engine's state, so it runs
        on the Raft thread.
        """
        address = None
        if node_id is not None:
            address = next((a for a, name in self._addresses.items() if name == node_id), node_id)
        what = f"transfer leadership to {node_id or 'the best follower'}"
        deadline = time.monotonic() + self.cluster.timeout_s
        while True:
            try:
                self._change(
                    what,
                    lambda cb: self._on_raft_thread(
                        lambda: self._engine.transferLeadership(address, cb)
                    ),
                )
                return
            except Unavailable:
                if time.monotonic() >= deadline or not self.is_leader:
                    raise
                time.sleep(RETRY_DELAY)

    def _on_raft_thread(self, call: Callable[[], None]) -> None:
        """Run ``call`` at the end of the engine's next tick (at most ~50 ms away)."""
        with self._lock:
            self._raft_calls.append(call)

    def _run_raft_calls(self) -> None:
        with self._lock:
            calls, self._raft_calls = self._raft_calls, []
        for call in calls:
            try:
                call()
            except Exception:
                log.exception("a cluster call on the raft thread failed")

    # -- lifecycle --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Journal counters in the shape of the local pipeline's (the node adds ``cluster``)."""
        journal = self.journal.stats()
        return {
            "backend": "raft",
            "durability": "always",
            "pipeline": {
                "batches": self.store.applied_seq,
                "flushes": self.entries,
                "fsyncs": journal.get("syncs", 0),
                "log_bytes": journal.get("bytes", 0),
                "last_seq": self.store.applied_seq,
                "failed": str(self._failed) if self._failed else None,
            },
        }

    def stop_writes(self) -> None:
        """Refuse new writes and barriers; the waiting ones get ``Closed`` (idempotent).

        A write already in an entry may still be applied (here, before the
        engine stops, or on the others): nobody is left to be told.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting, self._queue = self._queue, []
            for entry in self._window.values():
                waiting.extend(entry.writes)  # a later apply answers no one: they are done
            self._window.clear()
            for pending in waiting:
                pending.error = Closed("the database is closed")
            self._finish(waiting)

    def close(self) -> None:
        """``stop_writes``, then stop the Raft engine, sync the journal, release the folder."""
        self.stop_writes()
        with self._lock:
            if self._shut:
                return
            self._shut = True
        try:
            self._ticking = False
            self._ticker.join(timeout=10)
            self._engine.destroy()
            if self._dump_job is not None:
                self._dump_job.join(timeout=60)  # the folder stays ours until it is written
        finally:
            self._release()


def _fail_name(error: int) -> str:
    for name in dir(FAIL_REASON):
        if not name.startswith("_") and getattr(FAIL_REASON, name) == error:
            return name.lower()
    return str(error)
