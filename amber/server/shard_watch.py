"""Watches that span shards: this group's changes merged with every other group's.

On a sharded node (``--shard-map``: other Raft groups own slots) a watch —
``AMBER.WATCH``, a ``__amber_watch__`` channel, ``GET /v1/watch`` — is served
by a :class:`MergedWatch`: this node's own watch, plus one RESP connection per
other group, to a member of that group from the slot map, running
``AMBER.WATCH <spec> [FROM n] LOCAL``. ``LOCAL`` asks for that node's group
only (so a watch never fans out twice) and marks each message's last place
with ``1`` on the last event of its revision (``0`` before), so that only
whole revisions are passed on; its confirmation carries the first revision
the watch covers.

Revisions are per group, so a position is a **cursor** naming, per group, the
next revision to deliver: ``g1:121,g2:99`` means "from 121 on g1, from 99 on
g2" (the same sense as ``FROM 121``); a group the cursor does not name starts
at the changes committed after the watch opens. Every delivered event carries
the cursor that resumes just after it; within one revision (a transaction)
the cursor of all but its last event still names that revision, so a resume
never skips part of one. Order: within a group, revision order; across groups,
arrival order.

An upstream link that fails (the member died, its watch lagged, the server
stopped) reconnects on its own — members in map order, with a backoff — and
resumes after the last whole revision it handed on, so the merged stream has
no gap and no duplicate per group. Memory is bounded: the merged queue holds
at most :data:`QUEUE_BATCHES` revisions; when it is full the links stop
reading (the TCP window then holds the upstream servers back, where their own
watch queue bounds what waits) and this node's watch overflows into
``Lagged`` as any watch does, which ends the merged stream with a
:class:`ShardLagged` that names the cursor to resume from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis

from ..cluster.slots import Member
from ..database import Database
from ..errors import AmberError, Compacted, InvalidArgument, Lagged
from ..watch import Event, EventType, Watch

__all__ = [
    "MergedWatch",
    "ShardBatch",
    "ShardLagged",
    "ShardWatches",
    "Start",
    "format_cursor",
    "parse_cursor",
    "parse_start",
    "spec_of",
]

log = logging.getLogger(__name__)

#: Where a watch starts: a revision (every group), a cursor (per group) or now.
Start = int | dict[str, int] | None
#: Revisions the merged queue holds before the links stop reading.
QUEUE_BATCHES = 64
#: Bytes one link reads at a time.
READ_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 2.0
REPLY_TIMEOUT_S = 5.0
#: A link quiet this long sends PING; without an answer in ``REPLY_TIMEOUT_S`` it reconnects.
IDLE_PING_S = 10.0
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0

#: A group name in a cursor: no ``,``, ``:`` or space, and not starting with a digit
#: (so that ``__amber_watch__@5:7:*`` stays revision 5 of table ``7``).
GROUP_NAME = r"[^,:\s0-9][^,:\s]{0,127}"
_CURSOR_ITEM = re.compile(rf"({GROUP_NAME}):([0-9]{{1,19}})")
_COMPACTED = re.compile(
    r"revision (\d+) is compacted; the oldest revision still available is (\d+)"
)


def parse_cursor(text: str) -> dict[str, int]:
    """``{"g1": 121, "g2": 99}`` from ``g1:121,g2:99``; InvalidArgument when malformed."""
    cursor: dict[str, int] = {}
    for item in text.split(","):
        match = _CURSOR_ITEM.fullmatch(item.strip())
        if match is None or not 1 <= int(match[2]) < 2**63 or match[1] in cursor:
            raise InvalidArgument(
                f"a shard cursor is group:revision[,group:revision…] with revisions >= 1, "
                f"each group once, not {text[:80]!r}"
            )
        cursor[match[1]] = int(match[2])
    return cursor


def format_cursor(cursor: Mapping[str, int]) -> str:
    """The text form of a cursor, groups in name order."""
    return ",".join(f"{group}:{revision}" for group, revision in sorted(cursor.items()))


def parse_start(text: str) -> Start:
    """A ``FROM``/``from=`` value: a revision, or (with ``:``) a cursor."""
    if ":" in text:
        return parse_cursor(text)
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) < 2**63:
        raise InvalidArgument(f"start must be a revision >= 1 or a shard cursor, not {text[:80]!r}")
    return int(text)


def _start_of(start: Start, group: str) -> int | None:
    return start.get(group) if isinstance(start, dict) else start


def spec_of(table: str | None, key: str | None, prefix: str | None) -> bytes:
    """The AMBER.WATCH spec of a watch target (the inverse of ``watch_target``)."""
    if table is None:
        return b"*"
    if key is not None and key.endswith("*"):
        raise InvalidArgument("a key that ends in * cannot be watched across shards")
    rest = key if key is not None else (prefix or "") + "*"
    return f"{table}:{rest}".encode()


@dataclass(frozen=True, slots=True)
class ShardBatch:
    """One whole revision of one group, with the cursors to resume after its events."""

    group: str
    revision: int
    events: Sequence[Event]
    #: Resumes after this revision (the next one of ``group`` comes first).
    after: str
    #: Resumes at this revision (its events come again): for all but the last event.
    within: str

    def each(self) -> Iterator[tuple[Event, str]]:
        """Each event with the cursor that resumes just after it."""
        last = len(self.events) - 1
        for index, event in enumerate(self.events):
            yield event, self.after if index == last else self.within


class ShardLagged(Lagged):
    """A merged watch fell behind (this client read too slowly); ``cursor`` resumes it."""

    def __init__(self, group: str, last_revision: int, cursor: str) -> None:
        super().__init__(last_revision)
        self.args = (
            f"watcher fell behind and was cut off (group {group} after revision "
            f"{last_revision}); resume from the shard cursor {cursor}",
        )
        self.cursor = cursor


class _LinkFailed(Exception):
    """An upstream link broke in a way a reconnect may mend."""


class _Closed:
    """Put in the queue by ``close`` to wake a waiting consumer."""


def _remote_event(message: list[Any], prev: bool) -> Event:
    """An Event from an upstream ``amber.watch`` message, its diff as the owner computed it."""
    name = message[3].decode()
    table, sep, key = name.partition(":")
    if not sep:
        table, key = "default", name
    value = None if message[5] is None else json.loads(message[5])
    previous = json.loads(message[7]) if prev and message[7] is not None else None
    kind = cast(EventType, message[4].decode())
    event = Event(int(message[2]), table, key, kind, value, previous)
    # The diff travels with the event: without PREV it could not be computed here.
    object.__setattr__(event, "_diff", json.loads(message[6]))
    return event


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class MergedWatch:
    """This group's watch and one upstream watch per other group, as one stream."""

    def __init__(
        self,
        watches: ShardWatches,
        local: Watch[Any],
        *,
        spec: bytes,
        start: Start,
        prev_value: bool,
    ) -> None:
        self._watches = watches
        self._local = local
        self._spec = spec
        self._prev = prev_value
        self.group = watches.group()
        #: Per group: the next revision to hand to the consumer (as far as known).
        self._delivered: dict[str, int] = {self.group: local.revision + 1}
        #: Per group: the next revision to ask a reconnecting link for.
        self._queued: dict[str, int] = {}
        self._queue: asyncio.Queue[ShardBatch | BaseException | _Closed] = asyncio.Queue(
            QUEUE_BATCHES
        )
        self._closed = False
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow_local())]
        for group in watches.other_groups():
            first = _start_of(start, group)
            if first is not None:
                self._queued[group] = self._delivered[group] = first
            self._tasks.append(loop.create_task(self._follow(group)))

    @property
    def closed(self) -> bool:
        return self._closed

    def cursor(self) -> str:
        """Resumes after everything delivered so far."""
        return format_cursor(self._delivered)

    def close(self) -> None:
        """Stop every link and this node's watch; a waiting consumer ends quietly."""
        if self._closed:
            return
        self._closed = True
        self._local.close()
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_Closed())

    async def next(self, timeout: float | None = None) -> ShardBatch | None:
        """The next revision of some group; None when closed or after ``timeout`` idle.

        Raises what ended the stream (``ShardLagged``, ``Compacted``, ``Closed``).
        """
        if self._closed:
            return None
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if self._closed or isinstance(item, _Closed):
            return None
        if isinstance(item, Lagged):
            raise ShardLagged(self.group, item.last_revision, self.cursor()) from None
        if isinstance(item, BaseException):
            raise item
        within = format_cursor({**self._delivered, item.group: item.revision})
        self._delivered[item.group] = item.revision + 1
        return ShardBatch(item.group, item.revision, item.events, self.cursor(), within)

    async def batches(self) -> AsyncIterator[ShardBatch]:
        """Every revision until the stream ends (quietly when closed)."""
        while True:
            batch = await self.next()
            if batch is None:
                return
            yield batch

    async def _put(self, group: str, revision: int, events: Sequence[Event]) -> None:
        # Cursors are filled in by ``next``: they count what the consumer took.
        await self._queue.put(ShardBatch(group, revision, events, "", ""))

    async def _follow_local(self) -> None:
        try:
            async for batch in self._local.batches():
                if batch.events:
                    await self._put(self.group, batch.revision, batch.events)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # ends the merged stream, after what was queued
            await self._queue.put(exc)

    async def _follow(self, group: str) -> None:
        """Keep one link to ``group`` open: members in map order, reconnecting with a backoff."""
        backoff = BACKOFF_FIRST_S
        loop = asyncio.get_running_loop()
        while not self._closed:
            for member in self._watches.members(group):
                began = loop.time()
                try:
                    await self._link(group, member)
                except asyncio.CancelledError:
                    raise
                except AmberError as exc:  # history compacted: no resume can mend it
                    await self._queue.put(exc)
                    return
                except (OSError, TimeoutError, EOFError, _LinkFailed, hiredis.ProtocolError) as exc:
                    log.info("watch link to %s (%s) broke: %s", group, member.node_id, exc)
                except Exception:  # a reply of an unexpected shape: another member may do
                    log.warning(
                        "watch link to %s (%s) failed", group, member.node_id, exc_info=True
                    )
                if loop.time() - began > BACKOFF_MAX_S:  # it served a while: retry promptly
                    backoff = BACKOFF_FIRST_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _link(self, group: str, member: Member) -> None:
        """Stream ``group``'s changes from ``member`` until the link fails (raises)."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(member.host, member.port), CONNECT_TIMEOUT_S
        )
        parser = hiredis.Reader()

        async def reply(timeout: float) -> Any:
            while True:
                item = parser.gets()
                if item is not False:
                    return item
                data = await asyncio.wait_for(reader.read(READ_BYTES), timeout)
                if not data:
                    raise EOFError("the member closed the connection")
                parser.feed(data)

        try:
            password = self._watches.password()
            if password:
                writer.write(_command(b"AUTH", password.encode()))
                if isinstance(answer := await reply(REPLY_TIMEOUT_S), hiredis.ReplyError):
                    raise _LinkFailed(f"AUTH: {answer}")
            args = [b"AMBER.WATCH", self._spec]
            if group in self._queued:
                args += [b"FROM", str(self._queued[group]).encode()]
            writer.write(_command(*args, *([b"PREV"] if self._prev else []), b"LOCAL"))
            confirm = await reply(REPLY_TIMEOUT_S)
            if isinstance(confirm, hiredis.ReplyError):
                _raise_upstream(group, str(confirm))
            first = int(confirm[3])
            self._queued.setdefault(group, first)
            self._delivered.setdefault(group, first)
            await self._relay(group, reply, writer)
        finally:
            writer.close()

    async def _relay(
        self, group: str, reply: Callable[[float], Any], writer: asyncio.StreamWriter
    ) -> None:
        """Pass on each whole revision the link delivers (raises when it ends)."""
        pending: list[Event] = []
        pinged = False
        while True:
            try:
                message = await reply(IDLE_PING_S if not pinged else REPLY_TIMEOUT_S)
            except TimeoutError:
                if pinged:
                    raise _LinkFailed("no answer to PING") from None
                writer.write(_command(b"PING"))
                pinged = True
                continue
            pinged = False
            kind = message[0] if isinstance(message, list) and message else None
            if kind == b"amber.watch" and len(message) > 7:
                event = _remote_event(message, self._prev)
                pending.append(event)
                if message[-1] == 1:
                    self._queued[group] = event.revision + 1
                    await self._put(group, event.revision, pending)
                    pending = []
            elif kind == b"amber.watch.error":
                _raise_upstream(group, message[2].decode("utf-8", "replace"))


def _raise_upstream(group: str, text: str) -> None:
    """Raise what an upstream's error means: Compacted ends the stream, the rest reconnect."""
    found = _COMPACTED.search(text)
    if found is not None:
        exc = Compacted(int(found[1]), int(found[2]))
        exc.args = (f"group {group}: {exc}",)
        raise exc
    raise _LinkFailed(text)


class ShardWatches:
    """Opens merged watches on a sharded node; reads the slot map afresh each time."""

    def __init__(self, db: Database, view: Any, password: Callable[[], str | None]) -> None:
        self.db = db
        self.view = view
        self.password = password

    def group(self) -> str:
        return str(self.view.group)

    def _groups(self) -> Mapping[str, tuple[Member, ...]]:
        groups: Mapping[str, tuple[Member, ...]] = self.view.slot_map(self.view.status()).groups
        return groups

    def other_groups(self) -> list[str]:
        return sorted(g for g in self._groups() if g != self.group())

    def members(self, group: str) -> tuple[Member, ...]:
        """``group``'s members in map order (none if it left the map)."""
        return self._groups().get(group, ())

    def open(
        self,
        table: str | None,
        key: str | None,
        prefix: str | None,
        *,
        start: Start,
        prev_value: bool,
    ) -> MergedWatch:
        """A merged watch (on the running loop); this group's part opens now, so its
        errors (Compacted, InvalidArgument) raise here."""
        local = self.db.watch(
            table,
            key,
            prefix=prefix,
            start_revision=_start_of(start, self.group()),
            prev_value=prev_value,
        )
        return MergedWatch(
            self, local, spec=spec_of(table, key, prefix), start=start, prev_value=prev_value
        )
