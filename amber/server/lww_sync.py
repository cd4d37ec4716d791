"""Replicating eventual tables between cluster members: pull, join, collect tombstones.

Each member's eventual store numbers every change of a key's LWW state
(``Database.lww_changes``). A member pulls from each peer over RESP,
``AMBER.LWW PULL <me> <incarnation> <after> <limit>``, and joins what it gets
into its own store (``Lww`` ``state`` ops): joins are commutative and
idempotent (:mod:`amber.store.lww`), so order, duplicates and relays do not
matter, and a member that was cut off simply pulls the rest when it is back
(anti-entropy). The cursor is the peer's change number, valid within one
**incarnation** of the peer's store (it changes when the peer restarts);
with another incarnation the pull starts over from 0 — the whole state,
once, paged.

Before a state is applied the member's clock **observes** its stamps; a
stamp more than ``max_clock_skew_ms`` ahead is refused: the state waits
(per peer, by key, bounded) and is retried every second, applied once the
clocks agree; the refusal is counted (``AMBER.LWW STATUS``, metrics). The
rest of the stream goes on.

**Tombstones** are collected once every member has seen every write older
than them. A member's *watermark* is the oldest of its peers' clocks at the
moment it last caught up with each (their replies say when; a write
stamped before that was in the peer's store then, so it is here now). Every
reply carries the replier's watermark; the minimum over all members is a
time before which every member has every write, and a tombstone older than
that can never again meet a write it must beat.

Bounded: one page (``PAGE`` states) in flight per peer, a reply is applied
before the next pull, every wait has a timeout, and a broken link retries
with a backoff up to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..database import Database
from ..model import check_key, check_table, freeze, pack, unpack
from ..node.hlc import HybridClock
from ..store.batch import Collect, Lww
from ..store.lww import ZERO, as_stamp

__all__ = ["LwwSync", "PeerLink"]

log = logging.getLogger("amber.lww")

#: States per pull.
PAGE = 500
#: Pause between pulls once caught up, growing while nothing changes ...
IDLE_S = 0.02
#: ... up to this.
IDLE_MAX_S = 0.5
#: How often tombstones are looked at, in seconds.
COLLECT_EVERY_S = 5
#: States per peer that may wait for this clock (too far ahead) before the pull stops.
MAX_DEFERRED = 10_000


@dataclass
class PeerLink:
    """What this member knows of one peer's stream."""

    node_id: str
    address: str
    incarnation: str = ""
    cursor: int = 0
    #: The peer's physical clock when this member last caught up with it (0: never).
    caught_up_at: int = 0
    #: The peer's own watermark, from its last reply.
    watermark: int = 0
    connected: bool = False
    pulled: int = 0
    refused: int = 0
    #: States refused for a stamp too far ahead, retried each second: ``(table, key) -> blob``.
    deferred: dict[tuple[str, str], bytes] = field(default_factory=dict)
    error: str = ""
    last_ok: float = field(default_factory=time.monotonic)


class LwwSync:
    """Pulls every peer's eventual changes into this member's eventual store."""

    def __init__(
        self,
        db: Database,
        node_id: str,
        peers: dict[str, str],
        password: Callable[[], str | None],
    ) -> None:
        self.db = db
        self.node_id = node_id
        self.links = {peer: PeerLink(peer, address) for peer, address in sorted(peers.items())}
        self._password = password
        self._tasks: list[asyncio.Task[None]] = []
        self.collected = 0

    @property
    def active(self) -> bool:
        """Whether the cluster has eventual tables (until then, nothing is opened or pulled)."""
        return bool(self.db.eventual_tables())

    @property
    def store(self) -> Database:
        return self.db.eventual_store()

    @property
    def clock(self) -> HybridClock:
        clock = self.store.clock
        assert clock is not None
        return clock

    # -- serving a pull ----------------------------------------------------------------

    def serve(self, incarnation: str, after: int, limit: int) -> list[Any]:
        """``AMBER.LWW PULL``'s reply: ``[incarnation, next, clock, watermark, state...]``.

        From 0 when ``incarnation`` is not this store's (a new peer, or this
        member restarted). Each state is msgpack ``[table, key, present,
        value, base, fields, expires]``.
        """
        if not self.active:
            now = int(time.time() * 1000)
            return [b"-", 0, now, self.watermark() or now]
        store = self.store
        if incarnation != store.incarnation:
            after = 0
        clock_ms = store.stable_ms()  # read before the page: every write below it is in it
        following, states = store.lww_changes(after, max(1, min(limit, PAGE)))
        return [
            store.incarnation.encode(),
            following,
            clock_ms,
            self.watermark(),
            *(pack(state) for state in states),
        ]

    def watermark(self) -> int:
        """A time before which this member has every write of every member (0: unknown)."""
        own = self.store.stable_ms() if self.active else int(time.time() * 1000)
        return min([own, *(link.caught_up_at for link in self.links.values())])

    def global_watermark(self) -> int:
        """A time before which every member has every write: tombstones older can go."""
        marks = [self.watermark(), *(link.watermark for link in self.links.values())]
        return min(marks)

    # -- pulling -------------------------------------------------------------------------

    def start(self) -> None:
        for link in self.links.values():
            self._tasks.append(asyncio.get_running_loop().create_task(self._follow(link)))
        self._tasks.append(asyncio.get_running_loop().create_task(self._collector()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    async def _follow(self, link: PeerLink) -> None:
        backoff = 0.1
        while True:
            host, _, port = link.address.rpartition(":")
            client = aioredis.Redis(
                host=host,
                port=int(port),
                password=self._password(),
                socket_timeout=5.0,
                socket_connect_timeout=2.0,
            )
            idle = IDLE_S
            try:
                while True:
                    if not self.active:
                        await asyncio.sleep(IDLE_MAX_S)
                        continue
                    caught_up = await self.pull_once(link, client)
                    link.connected, link.error, backoff = True, "", 0.1
                    if caught_up:  # nothing new: poll less often, up to IDLE_MAX_S
                        await asyncio.sleep(idle)
                        idle = min(IDLE_MAX_S, idle * 1.5)
                    else:
                        idle = IDLE_S
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a lost link, an odd reply: retry, never die
                link.connected, link.error = False, str(exc) or type(exc).__name__
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
            finally:
                with contextlib.suppress(Exception):
                    await client.aclose()

    async def pull_once(self, link: PeerLink, client: Any) -> bool:
        """One page from ``link``'s peer, applied; True when it had nothing newer."""
        reply = await client.execute_command(
            "AMBER.LWW", "PULL", self.node_id, link.incarnation or "-", link.cursor, PAGE
        )
        incarnation, following, clock_ms, watermark, *raw = reply
        incarnation = incarnation.decode()
        if incarnation != link.incarnation:
            link.incarnation, link.cursor = incarnation, 0
        link.watermark = int(watermark)
        ops = self._admitted(link, raw)
        if len(link.deferred) > MAX_DEFERRED:
            # Too much is waiting for the clocks: stop here (the cursor stays) until it drains.
            await asyncio.sleep(1.0)
            return False
        if ops:
            await self.store.acommit_checked(ops)
            link.pulled += len(ops)
        link.cursor = int(following)
        link.last_ok = time.monotonic()
        if not raw:
            link.caught_up_at = int(clock_ms)
            return True
        return False

    def _admitted(self, link: PeerLink, blobs: list[bytes]) -> list[Lww]:
        """The ops for states whose stamps this clock accepts; the others wait in
        ``link.deferred`` (by key: a newer state of the key replaces a waiting one)."""
        ops = []
        for blob in blobs:
            try:
                table, key, present, value, base, fields, expires, stamps = _decoded(blob)
            except (ValueError, TypeError) as exc:
                # A peer runs the same code; a state that does not decode is
                # damage, not data: said and skipped, never applied half-read.
                log.error("a state from %s does not decode (%s); skipped", link.node_id, exc)
                continue
            if not all(self.clock.observe(s) for s in stamps):
                if (table, key) not in link.deferred:
                    link.refused += 1
                    log.warning(
                        "%s:%s from %s is stamped more than %d ms ahead of this clock; "
                        "applied once the clocks agree",
                        table,
                        key,
                        link.node_id,
                        self.clock.max_skew_ms,
                    )
                link.deferred[(table, key)] = blob
                continue
            link.deferred.pop((table, key), None)
            payload = [present, freeze(value) if present else None, base, fields, expires]
            ops.append(Lww(table, key, "state", payload, ZERO))
        return ops

    async def retry_deferred(self) -> int:
        """Apply the states that waited for this clock and now fit; how many."""
        applied = 0
        for link in self.links.values():
            if link.deferred:
                ops = self._admitted(link, list(link.deferred.values()))
                if ops:
                    await self.store.acommit_checked(ops)
                    applied += len(ops)
        return applied

    # -- tombstones --------------------------------------------------------------------

    async def _collector(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(1.0)
            ticks += 1
            with contextlib.suppress(Exception):
                await self.retry_deferred()
                if ticks % COLLECT_EVERY_S == 0:
                    await self.collect()

    async def collect(self) -> int:
        """Forget tombstones older than the global watermark; how many."""
        before = self.global_watermark()
        if before <= 0:
            return 0
        store = self.store
        found = await asyncio.to_thread(store.lww_tombstones, before)
        for i in range(0, len(found), PAGE):
            await store.acommit_checked([Collect(t, k, base) for t, k, base in found[i : i + PAGE]])
        self.collected += len(found)
        return len(found)

    def collector(self) -> Collector:
        """Prometheus metrics: states pulled, refusals for clock skew, tombstones, lag."""
        sync = self

        class _Lww(Collector):
            def collect(self) -> Iterator[Metric]:
                pulled = CounterMetricFamily(
                    "amber_lww_states_pulled", "Eventual states pulled, per peer", labels=["peer"]
                )
                refused = CounterMetricFamily(
                    "amber_lww_clock_refused",
                    "States refused for a stamp more than max_clock_skew_ms ahead, per peer",
                    labels=["peer"],
                )
                waiting = GaugeMetricFamily(
                    "amber_lww_deferred", "States waiting for this clock, per peer", labels=["peer"]
                )
                connected = GaugeMetricFamily(
                    "amber_lww_peer_connected", "1 while the pull link is up", labels=["peer"]
                )
                for link in sync.links.values():
                    pulled.add_metric([link.node_id], link.pulled)
                    refused.add_metric([link.node_id], link.refused)
                    waiting.add_metric([link.node_id], len(link.deferred))
                    connected.add_metric([link.node_id], int(link.connected))
                collected = CounterMetricFamily(
                    "amber_lww_tombstones_collected", "Tombstones forgotten once all had them"
                )
                collected.add_metric([], sync.collected)
                yield from (pulled, refused, waiting, connected, collected)

        return _Lww()

    def status(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "watermark": self.watermark(),
            "global_watermark": self.global_watermark(),
            "clock_refused": self.clock.refused,
            "tombstones_collected": self.collected,
            "tombstones": len(self.store.lww_tombstones(2**62)) if self.active else 0,
            "peers": [
                {
                    "id": link.node_id,
                    "address": link.address,
                    "connected": link.connected,
                    "cursor": link.cursor,
                    "pulled": link.pulled,
                    "refused": link.refused,
                    "deferred": len(link.deferred),
                    "caught_up_at": link.caught_up_at,
                    "error": link.error,
                }
                for link in self.links.values()
            ],
        }


def _decoded(blob: bytes) -> tuple[Any, ...]:
    """A pulled state, checked field by field; its stamps last. Raises ValueError."""
    table, key, present, value, base, fields, expires = unpack(blob)
    if not (isinstance(table, str) and isinstance(key, str) and isinstance(present, bool)):
        raise ValueError("table, key and present must be str, str, bool")
    if not isinstance(fields, dict) or not all(isinstance(f, str) for f in fields):
        raise ValueError("fields must map names to stamps")
    if expires is not None and (isinstance(expires, bool) or not isinstance(expires, int)):
        raise ValueError("expires must be an int or None")
    check_table(table)
    check_key(key)
    stamps = [as_stamp(base), *(as_stamp(s) for s in fields.values())]
    return table, key, present, value, base, fields, expires, stamps
