"""What every front end of one server shares: the database, metrics, health.

The RESP, HTTP and kvtext front ends each get the same ``ServerContext``,
so a command, an error mapping or a metric is defined once (style: one
command layer under several protocols).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..backup import BackupPolicy
from ..database import Database
from .metrics import Metrics
from .shard_watch import ShardWatches


@dataclass
class ServerContext:
    """The shared state of one running server."""

    db: Database
    metrics: Metrics
    started_at: float = field(default_factory=time.time)
    #: Where clients may have backups written (``AMBER.BACKUP``); refused by default.
    backups: BackupPolicy = field(default_factory=BackupPolicy)
    #: Extra health sources (front ends, server jobs): name -> callable returning a dict.
    health_sources: dict[str, Any] = field(default_factory=dict)
    #: ``--cluster-mode redis``: the Redis Cluster view (slot map), else None.
    shards: Any = None
    #: In Redis Cluster mode: opens watches merged over every group (see ``merged_watches``).
    shard_watches: ShardWatches | None = None

    @property
    def sharded(self) -> bool:
        """Whether other Raft groups own some slots now (the map can change online)."""
        return self.shards is not None and bool(self.shards.sharded)

    def merged_watches(self) -> ShardWatches | None:
        """Where watches open while other groups own slots (merged streams), else None."""
        return self.shard_watches if self.sharded else None

    @classmethod
    def for_database(cls, db: Database) -> ServerContext:
        return cls(db=db, metrics=Metrics(db.stats))

    def health(self) -> dict[str, Any]:
        """``{"status": "ok"|"degraded", ...}``: degraded when a background job restarts."""
        stats = self.db.stats()
        jobs = stats.get("jobs", {})
        healthy = all(job.get("state") == "running" for job in jobs.values())
        extra = {name: source() for name, source in self.health_sources.items()}
        return {
            "status": "ok"
            if healthy and all(e.get("ok", True) for e in extra.values())
            else "degraded",
            "revision": stats["revision"],
            "uptime_s": round(time.time() - self.started_at, 3),
            "durability": stats["durability"],
            "backend": stats["backend"],
            "jobs": jobs,
            **extra,
        }
