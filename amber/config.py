"""One typed configuration object for a database.

Every knob lives here so the embedded API, the CLI flags, a TOML file and
``AMBER_*`` environment variables fill the same fields in one place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from .errors import InvalidArgument

Durability = Literal["always", "interval", "never"]
DURABILITY_MODES: tuple[Durability, ...] = ("always", "interval", "never")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits, checked before anything is written."""

    max_key_bytes: int = 1024
    max_table_name: int = 128
    max_value_bytes: int = 16 * 1024 * 1024
    max_depth: int = 64
    #: An encoded batch (a transaction) may hold several values.
    max_batch_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Config:
    """How a database stores, syncs and maintains its data.

    ``durability`` says when a write is acknowledged:

    - ``always``: after the write-ahead log is fsynced (fdatasync); survives
      power loss. Concurrent writers share one fsync (group commit).
    - ``interval``: after the log reaches the OS; a background fsync runs every
      ``interval_ms``. Survives a process crash; a machine crash may lose the
      last ``interval_ms``.
    - ``never``: after the log reaches the OS; fsync is left to the OS (and to
      snapshots and close). Survives a process crash only.

    A write becomes visible to readers only once it is as durable as the mode
    promises, so a reader never sees a write that a crash could take back.
    """

    durability: Durability = "always"
    interval_ms: int = 100
    limits: Limits = field(default_factory=Limits)
    #: Take a snapshot once this many WAL bytes were written since the last one.
    snapshot_wal_bytes: int = 64 * 1024 * 1024
    #: Snapshots kept on disk (WAL segments are kept back to the oldest one).
    keep_snapshots: int = 2
    #: Roll to a new WAL segment file past this size.
    segment_bytes: int = 64 * 1024 * 1024
    #: How often the TTL sweeper looks for expired keys.
    ttl_sweep_ms: int = 1000
    #: Watch history window: at most this many revisions ...
    history_revisions: int = 100_000
    #: ... and at most this much memory held by its events: their keys, values
    #: and bookkeeping as Python objects (``amber.watch.history.estimate_bytes``),
    #: which take 3-20x their packed size. About 200k short writes by default.
    history_bytes: int = 64 * 1024 * 1024
    #: History carried inside each snapshot, so watches resume across a restart
    #: (kept small: it is decoded at every open; measured as ``history_bytes``).
    snapshot_history_bytes: int = 8 * 1024 * 1024
    #: Events queued for one watcher before it is cut off with ``Lagged`` ...
    watch_queue: int = 10_000
    #: ... and the memory they may hold (as the history counts it): a queue
    #: keeps its values alive after the history let them go.
    watch_queue_bytes: int = 64 * 1024 * 1024
    #: Eventual tables: a replica's write stamped more than this far ahead of
    #: this node's clock is refused (and counted), not applied.
    max_clock_skew_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_MODES:
            raise InvalidArgument(
                f"durability must be one of {', '.join(DURABILITY_MODES)}, not {self.durability!r}"
            )
        for name in (
            "interval_ms",
            "snapshot_wal_bytes",
            "keep_snapshots",
            "segment_bytes",
            "ttl_sweep_ms",
            "history_revisions",
            "history_bytes",
            "snapshot_history_bytes",
            "watch_queue",
            "watch_queue_bytes",
            "max_clock_skew_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgument(f"{name} must be a positive integer, not {value!r}")

    def replace(self, **changes: object) -> Config:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
