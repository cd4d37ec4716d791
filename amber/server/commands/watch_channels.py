"""AMBER.WATCH as pub/sub channels, so that plain ``redis-cli`` streams changes.

redis-cli (and most pub/sub clients) keep reading only after the SUBSCRIBE
family, so the watch is also offered as channels, under one reserved name:

- ``__amber_watch__:<spec>`` — changes committed from now on;
- ``__amber_watch__@<revision>:<spec>`` — from ``revision`` on (to resume,
  one past the last revision received).
- On a sharded node the watch covers every group (:mod:`amber.server.shard_watch`):
  each payload also has ``"shard"`` (its group) and ``"cursor"`` (resumes just
  after it), and ``__amber_watch__@<cursor>:<spec>`` (``@g1:121,g2:99:users:*``)
  resumes from a cursor.

``<spec>`` is AMBER.WATCH's: ``*`` (everything), ``table:*``,
``table:prefix*`` or ``table:key`` (without ``table:``, the ``default``
table). ``SUBSCRIBE name`` delivers ``message name payload``; ``PSUBSCRIBE
name`` delivers ``pmessage name __amber_watch__:<table>:<key> payload``. The
payload is JSON: ``{"revision", "table", "key", "type", "value", "diff"}``.

A watch ends only on an error: the client's queue overflowed (a slow reader:
the pump waits while the client's output is backed up, so the watch's bounded
queue overflows instead of memory growing), history compacted, the server
stopping. Then one last payload ``{"error", "message", "resume"}`` (``resume``:
the channel that goes on where it stopped) and an ``unsubscribe`` (or
``punsubscribe``) notice. Nothing PUBLISHed reaches these channels.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ...errors import AmberError, Closed, Compacted, Lagged
from ...watch import Event
from ..shard_watch import GROUP_NAME, MergedWatch, ShardBatch, ShardLagged, Start, parse_cursor
from .keys import join_key
from .registry import CommandError
from .replies import Push
from .values import dump_json

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

WATCH_CHANNEL = b"__amber_watch__"
#: How often a pump looks again at a client whose output is backed up.
BACKLOG_POLL_S = 0.01
#: A watch's pump hands the loop a turn once it has run this long.
YIELD_AFTER_S = 0.02
#: Watches (AMBER.WATCH streams and watch channels) one connection may hold:
#: each is a database watcher, its queue and a task (~8 KB; 50,000 on one
#: connection held 400 MB).
MAX_WATCHES = 1_000


def check_watch_room(session: Session, more: int) -> None:
    """Refuse to open ``more`` watches past ``MAX_WATCHES`` on this connection."""
    held = len(session.watches) + len(session.channel_watches)
    if held + more > MAX_WATCHES:
        raise CommandError(
            f"too many watches on this connection: {held} open, at most {MAX_WATCHES}"
        )


#: After ``@``: a revision or a shard cursor, then ``:`` and the spec.
_CHANNEL_START = re.compile(
    rf"([0-9]+|(?:{GROUP_NAME}:[0-9]+,)*{GROUP_NAME}:[0-9]+):(.*)".encode(), re.DOTALL
)
B = TypeVar("B")


def is_watch_channel(name: bytes) -> bool:
    return name.startswith((WATCH_CHANNEL + b":", WATCH_CHANNEL + b"@"))


def parse_watch_channel(name: bytes) -> tuple[bytes, Start]:
    """``(spec, start)`` of a watch channel's name: a revision, a shard cursor or None."""
    rest = name[len(WATCH_CHANNEL) :]
    start: Start = None
    if rest.startswith(b"@"):
        match = _CHANNEL_START.fullmatch(rest[1:])
        if match is None or match[1] == b"0" * len(match[1]):
            raise CommandError(
                "a watch channel from a revision is __amber_watch__@<revision>:<spec>, "
                "revision >= 1 (or a shard cursor group:revision,… instead of the revision)"
            )
        text = match[1].decode()
        try:
            start = int(text) if text.isdigit() else parse_cursor(text)
        except AmberError as exc:
            raise CommandError(str(exc)) from None
        spec = match[2]
    else:
        spec = rest[1:]
    body = spec[:-1] if spec.endswith(b"*") else spec
    if not spec or any(c in body for c in b"*?[]"):
        raise CommandError(
            "a watch channel is __amber_watch__:<spec>, spec one of *, table:*, "
            "table:prefix* or table:key"
        )
    return spec, start


async def drain_batches(
    session: Session, batches: AsyncIterable[B], deliver: Callable[[B], Iterable[None]]
) -> None:
    """Hand each batch to ``deliver`` until the stream ends (raises its end).

    ``deliver`` yields after each message it pushed. A replay from an old
    revision has every batch ready at once, and encoding wide documents is
    slow: so the loop gets a turn whenever ``YIELD_AFTER_S`` went by, also
    inside one batch (a transaction over many keys), and other clients are
    served (a replay held every front end ~4 s). While the client does not
    read (its output is backed up) no more is taken, so a slow client makes
    the watch's bounded queue overflow into ``Lagged`` — a message it sees —
    rather than server memory grow.
    """
    turn = time.perf_counter()
    async for batch in batches:
        for _ in deliver(batch):
            if time.perf_counter() - turn >= YIELD_AFTER_S:
                await asyncio.sleep(0)
                turn = time.perf_counter()
        while session.backlogged():
            await asyncio.sleep(BACKLOG_POLL_S)
            turn = time.perf_counter()


async def drain_watch(session: Session, watch: Any, deliver: Callable[[Event], None]) -> None:
    """Hand each event of ``watch`` to ``deliver`` (see :func:`drain_batches`)."""

    def each(batch: Any) -> Iterator[None]:
        for event in batch.events:
            deliver(event)
            yield None

    await drain_batches(session, watch.batches(), each)


def _payload(event: Event, shard: str | None = None, cursor: str | None = None) -> bytes:
    body = {
        "revision": event.revision,
        "table": event.table,
        "key": event.key,
        "type": event.type,
        "value": event.value,
        "diff": event.diff,
    }
    if event.stamp is not None:  # an eventual table: who wrote it, and when (HLC)
        body.update(origin=event.origin, hlc=event.hlc)
    if shard is not None:
        body.update(shard=shard, cursor=cursor)
    return dump_json(body).encode()


def _resume(spec: bytes, exc: AmberError) -> str | None:
    """The channel name that goes on where a watch that ended with ``exc`` stopped."""
    if isinstance(exc, ShardLagged):
        return f"__amber_watch__@{exc.cursor}:{spec.decode('utf-8', 'replace')}"
    if isinstance(exc, Lagged):
        start = exc.last_revision + 1
    elif isinstance(exc, Compacted):
        start = exc.oldest_available  # skips what was compacted: the message says so
    else:
        return None
    return f"__amber_watch__@{start}:{spec.decode('utf-8', 'replace')}"


def _error_payload(spec: bytes, exc: BaseException) -> bytes:
    if isinstance(exc, AmberError):
        name = "lagged" if isinstance(exc, Lagged) else type(exc).__name__.lower()
        body = {"error": name, "message": str(exc), "resume": _resume(spec, exc)}
    else:
        body = {
            "error": "internal",
            "message": "internal error; the server log has the details",
            "resume": None,
        }
    return dump_json(body).encode()


async def _pump(session: Session, name: bytes, pattern: bool, spec: bytes, watch: Any) -> None:
    def send(event: Event, payload: bytes) -> None:
        if pattern:
            channel = WATCH_CHANNEL + b":" + join_key(event.table, event.key).encode()
            session.push(Push([b"pmessage", name, channel, payload]))
        else:
            session.push(Push([b"message", name, payload]))

    def deliver_merged(batch: ShardBatch) -> Iterator[None]:
        for event, cursor in batch.each():
            send(event, _payload(event, batch.group, cursor))
            yield None

    ended: BaseException
    try:
        if isinstance(watch, MergedWatch):
            await drain_batches(session, watch.batches(), deliver_merged)
        else:
            await drain_watch(session, watch, lambda event: send(event, _payload(event)))
        ended = Closed("the watch was closed")
    except asyncio.CancelledError:
        raise
    except AmberError as exc:
        ended = exc
    except Exception as exc:
        log.exception("watch channel %r failed", name)
        ended = exc
    finally:
        watch.close()
    # It ended by itself: say why on the channel, then leave it.
    payload = _error_payload(spec, ended)
    if pattern:
        session.push(Push([b"pmessage", name, name, payload]))
    else:
        session.push(Push([b"message", name, payload]))
    if session.channel_watches.get((pattern, name)) is asyncio.current_task():
        del session.channel_watches[(pattern, name)]
        (session.patterns if pattern else session.channels).discard(name)
        kind = b"punsubscribe" if pattern else b"unsubscribe"
        session.push(Push([kind, name, session.subscriptions]))


def open_watch(session: Session, name: bytes) -> Any:
    """The database watch a channel name asks for; CommandError if it is malformed."""
    from .pubsub import watch_target  # noqa: PLC0415  (pubsub imports this module)

    spec, start = parse_watch_channel(name)
    table, key, prefix = watch_target(spec)
    db = session.state.db
    shards = session.state.ctx.merged_watches()
    try:
        if shards is not None:
            return shards.open(table, key, prefix, start=start, prev_value=False)
        if isinstance(start, dict):
            raise CommandError("a shard cursor needs a sharded node (--shard-map)")
        if table is None:
            return db.watch(start_revision=start, prev_value=False)
        return db.table(table).watch(key, prefix=prefix, start_revision=start, prev_value=False)
    except AmberError as exc:
        raise CommandError(f"{name.decode('utf-8', 'replace')}: {exc}") from None


def start(session: Session, name: bytes, pattern: bool, watch: Any) -> None:
    """Subscribe ``session`` to a watch channel whose watch is open.

    Already subscribed: nothing changes (as in Redis), so no event is lost.
    """
    if (pattern, name) in session.channel_watches:
        watch.close()
        return
    spec, _ = parse_watch_channel(name)
    task = asyncio.get_running_loop().create_task(_pump(session, name, pattern, spec, watch))
    session.channel_watches[(pattern, name)] = task
    (session.patterns if pattern else session.channels).add(name)


def stop(session: Session, name: bytes, pattern: bool) -> None:
    """Leave a watch channel (nothing if not subscribed)."""
    (session.patterns if pattern else session.channels).discard(name)
    task = session.channel_watches.pop((pattern, name), None)
    if task is not None:
        task.cancel()
