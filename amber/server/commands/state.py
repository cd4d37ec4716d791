"""What the commands of one server share: database, settings, pub/sub, stats."""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ...database import Database
from ..context import ServerContext
from ..metrics import LATENCY_BUCKETS
from .coalesce import Coalescer
from .keys import compile_glob
from .keyspace import ScanCursors
from .pubsub import PubSub
from .registry import CommandError
from .scope import DirectReads

if TYPE_CHECKING:
    from .session import Session

__all__ = ["CommandStats", "RuntimeConfig", "ServerState"]

#: What the server says it is (clients look at the Redis version it mimics).
REDIS_VERSION = "7.2.0"
AMBER_VERSION = "0.1.0"

_KEYSPACE_CLASSES = frozenset("KEg$lshzxetdmnA")


def config_set_error(name: str, why: str) -> CommandError:
    """Redis' words for a CONFIG SET it refuses, naming the parameter."""
    return CommandError(f"CONFIG SET failed (possibly related to argument '{name}') - {why}")


def check_notify_flags(value: str) -> str:
    """Validate ``notify-keyspace-events`` (Redis' class letters)."""
    bad = set(value) - _KEYSPACE_CLASSES
    if bad:
        raise config_set_error(
            "notify-keyspace-events", f"invalid event class {''.join(sorted(bad))!r}"
        )
    return value


class RuntimeConfig:
    """The settings CONFIG GET shows and CONFIG SET changes (as Redis names them).

    ``values`` maps a Redis config name to its text; ``setters`` names the
    ones that may change while running, each with a validating function.
    """

    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)
        self.setters: dict[str, Callable[[str], str]] = {
            "notify-keyspace-events": check_notify_flags,
            "timeout": _non_negative_int("timeout"),
            "maxclients": _non_negative_int("maxclients"),
            "requirepass": lambda v: v,
        }
        self.listeners: list[Callable[[str, str], None]] = []

    def get(self, pattern: str) -> dict[str, str]:
        match = compile_glob(pattern.lower())
        return {k: v for k, v in sorted(self.values.items()) if match(k)}

    def set(self, name: str, value: str) -> None:
        self.set_many([(name, value)])

    def set_many(self, pairs: list[tuple[str, str]]) -> None:
        """CONFIG SET: every value is checked before any is applied (all or nothing, as Redis)."""
        checked: dict[str, str] = {}
        for raw, value in pairs:
            name = raw.lower()
            setter = self.setters.get(name)
            if setter is None:
                if name in self.values:
                    raise config_set_error(raw, "can't set immutable config")
                raise CommandError(
                    f"Unknown option or number of arguments for CONFIG SET - '{raw}'"
                )
            if name in checked:
                raise config_set_error(raw, "duplicate parameter")
            checked[name] = setter(value)
        self.values.update(checked)
        for name, value in checked.items():
            for listener in self.listeners:
                listener(name, value)

    def int(self, name: str) -> int:
        return int(self.values.get(name, "0") or 0)


def _non_negative_int(name: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise config_set_error(name, "argument couldn't be parsed into an integer")
        return str(number)

    return check


class CommandStats:
    """Calls, failures and latency per command, kept without locks or labels.

    Recording a command costs well under a microsecond (Prometheus children
    cost several): the ``metrics`` job folds the counts into the shared
    ``amber_requests`` counter once a second, and :meth:`collector` serves
    the latency histogram at scrape time.
    """

    def __init__(self, frontend: str) -> None:
        self.frontend = frontend
        #: name -> [calls, failed, seconds, bucket counts]
        self.commands: dict[str, list[Any]] = {}
        self._flushed: dict[str, tuple[int, int]] = {}
        self.total = 0

    def record(self, name: str, seconds: float, ok: bool) -> None:
        stats = self.commands.get(name)
        if stats is None:
            stats = self.commands[name] = [0, 0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        stats[0] += 1
        if not ok:
            stats[1] += 1
        stats[2] += seconds
        stats[3][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.total += 1

    def record_many(self, name: str, count: int, seconds_each: float) -> None:
        """``count`` successful calls that took ``seconds_each`` on average."""
        stats = self.commands.get(name)
        if stats is None:
            stats = self.commands[name] = [0, 0, 0.0, [0] * (len(LATENCY_BUCKETS) + 1)]
        stats[0] += count
        stats[2] += seconds_each * count
        stats[3][bisect.bisect_left(LATENCY_BUCKETS, seconds_each)] += count
        self.total += count

    def flush(self, ctx: ServerContext) -> None:
        """Add what was counted since the last flush to ``ctx.metrics.requests``."""
        requests = ctx.metrics.requests
        for name, stats in list(self.commands.items()):
            calls, failed = stats[0], stats[1]
            old_calls, old_failed = self._flushed.get(name, (0, 0))
            ok_delta = (calls - failed) - (old_calls - old_failed)
            if ok_delta > 0:
                requests.labels(self.frontend, name.lower(), "ok").inc(ok_delta)
            if failed > old_failed:
                requests.labels(self.frontend, name.lower(), "error").inc(failed - old_failed)
            self._flushed[name] = (calls, failed)

    def reset(self) -> None:
        self.commands.clear()
        self._flushed.clear()
        self.total = 0

    def collector(self) -> Collector:
        stats = self

        class _Latency(Collector):
            def collect(self) -> Iterator[Metric]:
                family = HistogramMetricFamily(
                    f"amber_{stats.frontend}_request_seconds",
                    f"{stats.frontend.upper()} command latency",
                    labels=["command"],
                )
                for name, (_calls, _failed, seconds, buckets) in list(stats.commands.items()):
                    cumulative, total = [], 0
                    for bound, count in zip(
                        [*map(str, LATENCY_BUCKETS), "+Inf"], buckets, strict=True
                    ):
                        total += count
                        cumulative.append((bound, total))
                    family.add_metric([name.lower()], cumulative, seconds)
                yield family

        return _Latency()


class ServerState:
    """One server's shared state; front ends create a ``Session`` per client."""

    def __init__(
        self,
        ctx: ServerContext,
        config: RuntimeConfig,
        *,
        frontend: str = "resp",
    ) -> None:
        self.ctx = ctx
        self.db: Database = ctx.db
        self.config = config
        self.reads = DirectReads(ctx.db)
        #: In a cluster, reads wait for a Raft log barrier unless a client asked
        #: for stale ones (``READONLY``): see ``Session.execute``.
        self.clustered = ctx.db.cluster_status() is not None
        #: In a cluster: replicates eventual tables between members (``AMBER.LWW``).
        self.lww_sync: Any = None
        #: ``--allow-clock-offset``: ``AMBER.LWW CLOCK-OFFSET`` may skew the eventual clock.
        self.allow_clock_offset = False
        #: ``--cluster-mode redis``: the Redis Cluster view (CLUSTER, CROSSSLOT), else None.
        self.redis_cluster: Any = None
        self.pubsub: PubSub = PubSub(self)
        self.sessions: dict[int, Session] = {}
        self.scan_cursors = ScanCursors()
        self.stats = CommandStats(frontend)
        self.coalescer = Coalescer(self)
        #: (table, key) -> completion of this server's last in-flight write to it.
        self.inflight: dict[tuple[str, str], asyncio.Future[None]] = {}
        self.started = time.time()
        self.pid = os.getpid()
        self._next_id = 0
        self.connections_received = 0
        self.rejected_connections = 0
        #: Clients cut off for not reading their replies (output buffer hard limit).
        self.output_limit_disconnections = 0
        #: Extra INFO "amber" lines from the process (ports, jobs): name -> value.
        self.info_sources: list[Callable[[], dict[str, Any]]] = []
        #: Open connections of the other front ends (HTTP, kvtext): ``maxclients``
        #: bounds them together with the RESP sessions (see :meth:`clients_full`).
        self.other_clients: list[Callable[[], int]] = []

    def clients_full(self) -> bool:
        """Whether ``maxclients`` connections are open over every front end.

        One bound for all of them: each connection holds a file descriptor,
        and a process out of descriptors cannot write its data files (a failed
        snapshot stops writes until a restart).
        """
        limit = self.config.int("maxclients")
        if not limit:
            return False
        return len(self.sessions) + sum(count() for count in self.other_clients) >= limit

    def next_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def reset_stats(self) -> None:
        """CONFIG RESETSTAT: the counters INFO stats and commandstats show start over."""
        self.stats.reset()
        self.connections_received = 0
        self.rejected_connections = 0
        self.output_limit_disconnections = 0

    @property
    def password(self) -> str | None:
        return self.config.values.get("requirepass") or None
