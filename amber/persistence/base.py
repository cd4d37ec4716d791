"""The ``Backend`` contract every persistence backend keeps.

A backend stores two things, both opaque to it:

- the **log**: records ``(seq, payload)`` with ``seq`` = 1, 2, 3 … without
  gaps; a payload is one encoded batch (the store's codec, not ours);
- **snapshots**: a sequence of opaque chunks that together describe the state
  after applying every record up to ``last_seq``.

The node above drives it. Its threading contract:

- ``append`` calls are serialized by the caller; so are ``flush`` calls;
  but an ``append`` may run while another thread is inside ``flush`` (group
  commit: writers keep appending while the leader fsyncs the previous group).
- ``write_snapshot`` runs on its own thread, concurrently with
  ``append``/``flush``, never concurrently with itself.
- ``recover`` is called once, first; ``close`` once, last.

Durability promise: when ``flush(sync=True)`` returns ``n``, every record with
``seq <= n`` survives power loss; after ``flush(sync=False)`` they survive a
crash of this process. A backend that cannot keep a promise raises
``StorageFailed`` and must not be used for writes again.

Recovery promise: ``recover`` returns the newest snapshot and every record
after it, in order. A torn tail (the last, unacknowledged write cut short) is
cut off and reported in ``notes``; any other damage raises ``Corrupted`` with
the file (or object) and offset. Nothing is ever skipped silently.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class SnapshotData:
    """A snapshot read back: the state after record ``last_seq``."""

    last_seq: int
    chunks: Iterator[bytes]
    #: Where it came from (file name, object key), for messages.
    source: str = ""


@dataclass(slots=True)
class Recovered:
    """What a backend hands back at open."""

    snapshot: SnapshotData | None
    #: Records after the snapshot, ``seq`` strictly increasing by one.
    records: Iterator[tuple[int, bytes]]
    #: Human-readable reports (a truncated torn tail, a removed temp file).
    notes: list[str] = field(default_factory=list)


class Backend(abc.ABC):
    """Makes the log and snapshots durable; see the module doc for the contract."""

    #: A short name for messages and metrics ("log", "memory", "sqlite", …).
    name: str = "backend"

    @abc.abstractmethod
    def recover(self) -> Recovered:
        """Take the writer lock and hand back the durable state.

        Raises ``Locked`` when another writer holds it, ``Corrupted`` on damage.
        The returned iterators must be consumed before ``append`` is called.
        """

    @abc.abstractmethod
    def append(self, seq: int, payload: bytes) -> None:
        """Queue one record; not durable until a ``flush`` covers it."""

    @abc.abstractmethod
    def flush(self, sync: bool) -> int:
        """Write out every record appended before this call; return the last seq written.

        With ``sync`` the records are on stable storage when this returns.
        """

    @abc.abstractmethod
    def write_snapshot(self, last_seq: int, chunks: Iterable[bytes]) -> None:
        """Store a snapshot atomically, then drop what it makes unnecessary.

        A crash at any point leaves either the old or the new snapshot whole.
        Log records up to the oldest kept snapshot's ``last_seq`` may be removed.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Flush with sync, release the writer lock; idempotent."""

    def log_bytes_since_snapshot(self) -> int:
        """Bytes of log written since the last snapshot (drives auto-snapshots)."""
        return 0
