"""Pub/sub, keyspace notifications, and AMBER.WATCH.

- ``SUBSCRIBE``/``PSUBSCRIBE``/``PUBLISH``: plain channels, local to this
  server, as in Redis.
- Keyspace notifications in Redis' format, enabled with
  ``CONFIG SET notify-keyspace-events KEA`` (or the ``notify_keyspace_events``
  setting): ``__keyspace@0__:<key>`` carries the event name,
  ``__keyevent@0__:<event>`` the key. They come from the database's watch
  stream, so they report every committed change — from RESP, HTTP, kvtext or
  the TTL sweeper — in commit order. Events: ``set`` (a put; class ``$``),
  ``merge`` (a merge; class ``d``), ``del`` (class ``g``), ``expired``
  (class ``x``).
- Watch channels, ``SUBSCRIBE __amber_watch__:users:*`` (see
  :mod:`.watch_channels`): the same stream as pub/sub messages, for clients
  (redis-cli) that only listen after SUBSCRIBE.
- ``AMBER.WATCH <key | prefix* | *> [FROM revision] [PREV]``: what Redis
  lacks — a stream of ``["amber.watch", spec, revision, key, type, value,
  diff(, prev)(, hlc)]`` messages (values and the RFC 7396 diff as JSON text) that
  can start from an old revision and resume after a disconnect. RESP3 gets
  push messages; in RESP2 the connection enters subscribed mode. An
  eventual table's events end with the winning write's hybrid logical
  clock stamp, ``ms.counter@origin`` (its revisions are this node's own).
  On a sharded node it covers every group (:mod:`amber.server.shard_watch`):
  each message ends with two more fields, the event's group and the cursor
  that resumes just after it (``g1:121,g2:99``), which ``FROM`` accepts.
  ``LOCAL`` (what such a node asks the other groups for) keeps to this node's
  group: the confirmation ends with the first revision the watch covers and
  each message with ``1`` on the last event of its revision, else ``0``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ...errors import AmberError
from ...store.lww import stamp_text
from ...watch import Event, EventBatch
from ..shard_watch import MergedWatch, ShardBatch, Start, parse_cursor
from .keys import DEFAULT_TABLE, compile_glob, join_key, split_key
from .registry import REGISTRY, CommandError, syntax_error
from .replies import Push, Replies
from .values import dump_json
from .watch_channels import check_watch_room, drain_batches, is_watch_channel, open_watch
from .watch_channels import start as start_channel_watch
from .watch_channels import stop as stop_channel_watch

if TYPE_CHECKING:
    from .session import Session
    from .state import ServerState

command = REGISTRY.command
log = logging.getLogger(__name__)

KEYSPACE = b"__keyspace@0__:"
KEYEVENT = b"__keyevent@0__:"
#: Event type -> (Redis event name, notification class).
EVENT_NAMES = {
    "put": (b"set", "$"),
    "merge": (b"merge", "d"),
    "delete": (b"del", "g"),
    "expire": (b"expired", "x"),
}
_ALL_CLASSES = "g$lshzxetd"


def _bytes_glob(pattern: bytes) -> Callable[[bytes], bool]:
    match = compile_glob(pattern.decode("latin-1"))
    return lambda channel: match(channel.decode("latin-1"))


def _join(
    members: dict[bytes, set[Session]], mine: set[bytes], session: Session, name: bytes
) -> None:
    """Add ``session`` to the subscribers of ``name`` (a channel or a pattern)."""
    members.setdefault(name, set()).add(session)
    mine.add(name)


def _leave(
    members: dict[bytes, set[Session]], mine: set[bytes], session: Session, name: bytes
) -> None:
    """Remove ``session`` from the subscribers of ``name``; forget ``name`` when none are left."""
    mine.discard(name)
    group = members.get(name)
    if group is not None:
        group.discard(session)
        if not group:
            del members[name]


class PubSub:
    """Channel and pattern subscriptions of one server's sessions."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.channels: dict[bytes, set[Session]] = {}
        self.patterns: dict[bytes, set[Session]] = {}
        #: The compiled glob of each pattern in :attr:`patterns`.
        self._matchers: dict[bytes, Callable[[bytes], bool]] = {}
        #: The first revision keyspace notifications must cover (set when one is wanted).
        self.keyspace_from: int | None = None
        #: Set by the notifier job while its watch runs.
        self.notifier_active = False

    def subscribe(self, session: Session, channel: bytes) -> None:
        _join(self.channels, session.channels, session, channel)
        if channel.startswith((KEYSPACE, KEYEVENT)):
            self._want_keyspace()

    def psubscribe(self, session: Session, pattern: bytes) -> None:
        if pattern not in self._matchers:
            self._matchers[pattern] = _bytes_glob(pattern)
        _join(self.patterns, session.patterns, session, pattern)
        if pattern.startswith((b"_", b"*", b"?", b"[")):
            self._want_keyspace()

    def _want_keyspace(self) -> None:
        if not self.notifier_active:
            self.keyspace_from = self.state.db.revision + 1

    def unsubscribe(self, session: Session, channel: bytes) -> None:
        if is_watch_channel(channel):
            stop_channel_watch(session, channel, pattern=False)
            return
        _leave(self.channels, session.channels, session, channel)

    def punsubscribe(self, session: Session, pattern: bytes) -> None:
        if is_watch_channel(pattern):
            stop_channel_watch(session, pattern, pattern=True)
            return
        _leave(self.patterns, session.patterns, session, pattern)
        if pattern not in self.patterns:
            self._matchers.pop(pattern, None)

    def drop_session(self, session: Session) -> None:
        for channel in list(session.channels):
            self.unsubscribe(session, channel)
        for pattern in list(session.patterns):
            self.punsubscribe(session, pattern)

    def publish(self, channel: bytes, message: bytes) -> int:
        """Deliver to subscribers of the channel and of matching patterns; how many."""
        receivers = 0
        for session in self.channels.get(channel, ()):
            session.push(Push([b"message", channel, message]))
            receivers += 1
        for pattern, sessions in self.patterns.items():
            if sessions and self._matchers[pattern](channel):
                for session in sessions:
                    session.push(Push([b"pmessage", pattern, channel, message]))
                    receivers += 1
        return receivers

    # -- keyspace notifications -----------------------------------------------------

    def keyspace_wanted(self) -> bool:
        """Whether notifications are enabled and someone may listen."""
        flags = self.state.config.values.get("notify-keyspace-events", "")
        return (
            bool(flags) and bool(self.channels or self.patterns) and ("K" in flags or "E" in flags)
        )

    def publish_events(self, events: Iterable[Event]) -> None:
        """Turn committed changes into keyspace/keyevent messages (on the loop)."""
        flags = self.state.config.values.get("notify-keyspace-events", "")
        if not flags:
            return
        classes = flags.replace("A", _ALL_CLASSES)
        keyspace, keyevent = "K" in flags, "E" in flags
        for event in events:
            name, cls = EVENT_NAMES.get(event.type, (event.type.encode(), "g"))
            if cls not in classes:
                continue
            key = join_key(event.table, event.key).encode()
            if keyspace:
                self.publish(KEYSPACE + key, name)
            if keyevent:
                self.publish(KEYEVENT + name, key)


# -- commands ---------------------------------------------------------------------


def _confirm_each(
    session: Any, kind: bytes, apply: Callable[[Any, bytes], None], names: Iterable[bytes]
) -> Replies:
    """``apply`` to each name, each confirmed by a ``[kind, name, count]`` push.

    Without names, one ``[kind, nil, count]`` (as UNSUBSCRIBE with nothing subscribed).
    """
    out = Replies()
    for name in names:
        apply(session, name)
        out.append(Push([kind, name, session.subscriptions]))
    return out or Replies([Push([kind, None, session.subscriptions])])


def _subscribe(session: Any, names: list[bytes], pattern: bool) -> Replies:
    """SUBSCRIBE/PSUBSCRIBE: watch channels' watches open first, so a malformed
    one refuses the whole command before anything is subscribed."""
    hub: PubSub = session.state.pubsub
    wanted = {n for n in names if is_watch_channel(n)} - {
        n for (p, n) in session.channel_watches if p == pattern
    }
    check_watch_room(session, len(wanted))
    opened: dict[bytes, Any] = {}
    try:
        for name in names:
            if is_watch_channel(name) and name not in opened:
                opened[name] = open_watch(session, name)
    except CommandError:
        for watch in opened.values():
            watch.close()
        raise

    def apply(session: Any, name: bytes) -> None:
        if is_watch_channel(name):
            watch = opened.pop(name, None)
            if watch is not None:
                start_channel_watch(session, name, pattern, watch)
        elif pattern:
            hub.psubscribe(session, name)
        else:
            hub.subscribe(session, name)

    return _confirm_each(session, b"psubscribe" if pattern else b"subscribe", apply, names)


@command("SUBSCRIBE", -2, "pubsub", group="pubsub")
def subscribe(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Receive messages published to these channels (and watch channels)."""
    return _subscribe(session, args[1:], pattern=False)


@command("PSUBSCRIBE", -2, "pubsub", group="pubsub")
def psubscribe(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Receive messages published to channels matching these patterns (and watch channels)."""
    return _subscribe(session, args[1:], pattern=True)


@command("UNSUBSCRIBE", -1, "pubsub", group="pubsub")
def unsubscribe(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Stop receiving these channels (all without arguments)."""
    hub: PubSub = session.state.pubsub
    channels = args[1:] or sorted(session.channels)
    return _confirm_each(session, b"unsubscribe", hub.unsubscribe, channels)


@command("PUNSUBSCRIBE", -1, "pubsub", group="pubsub")
def punsubscribe(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Stop receiving these patterns (all without arguments)."""
    hub: PubSub = session.state.pubsub
    patterns = args[1:] or sorted(session.patterns)
    return _confirm_each(session, b"punsubscribe", hub.punsubscribe, patterns)


@command("PUBLISH", 3, "fast", group="pubsub")
def publish(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Send a message to a channel; how many clients received it."""
    hub: PubSub = session.state.pubsub
    return hub.publish(args[1], args[2])


@command("PUBSUB", -2, "fast", group="pubsub")
def pubsub(session: Any, kv: Any, args: list[bytes]) -> Any:
    """PUBSUB CHANNELS [pattern] | NUMSUB [channel …] | NUMPAT."""
    hub: PubSub = session.state.pubsub
    sub = args[1].upper()
    # Redis 7's words for a wrong count, which differ by subcommand.
    if sub == b"NUMPAT" and len(args) > 2:
        raise CommandError("wrong number of arguments for 'pubsub|numpat' command")
    if sub == b"CHANNELS" and len(args) > 3:
        raise CommandError(
            "unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP."
        )
    if sub == b"CHANNELS":
        match = _bytes_glob(args[2]) if len(args) > 2 else None
        return [c for c in sorted(hub.channels) if match is None or match(c)]
    if sub == b"NUMSUB":
        out: list[Any] = []
        for channel in args[2:]:
            out += [channel, len(hub.channels.get(channel, ()))]
        return out
    if sub == b"NUMPAT":
        return len(hub.patterns)
    name = args[1].decode("utf-8", "replace")
    raise CommandError(f"unknown subcommand '{name}'. Try PUBSUB HELP.")


# -- AMBER.WATCH -------------------------------------------------------------------------


def watch_target(spec: bytes) -> tuple[str | None, str | None, str | None]:
    """``(table, key, prefix)`` for ``*``, ``table:*``, ``table:pre*``, ``key``."""
    if spec == b"*":
        return None, None, None
    table, key = split_key(spec)
    if key.endswith("*"):
        return table, None, key[:-1]
    if ":" not in spec.decode("utf-8", "replace") and spec.endswith(b"*"):
        return DEFAULT_TABLE, None, key[:-1]
    return table, key, None


def _json_or_none(value: Any) -> bytes | None:
    return None if value is None else dump_json(value).encode()


def _message(spec: bytes, event: Event, prev: bool) -> list[Any]:
    message = [
        b"amber.watch",
        spec,
        event.revision,
        join_key(event.table, event.key).encode(),
        event.type.encode(),
        _json_or_none(event.value),
        dump_json(event.diff).encode(),
    ]
    if prev:
        message.append(_json_or_none(event.prev_value))
    if event.stamp is not None:  # an eventual table: the winning write's HLC, ms.counter@origin
        message.append(stamp_text(event.stamp).encode())
    return message


async def _pump(session: Session, spec: bytes, watch: Any, prev: bool, local: bool) -> None:
    def deliver(batch: EventBatch) -> Iterator[None]:
        last = len(batch.events) - 1
        for index, event in enumerate(batch.events):
            message = _message(spec, event, prev)
            if local:
                message.append(int(index == last))
            session.push(Push(message))
            yield None

    def deliver_merged(batch: ShardBatch) -> Iterator[None]:
        shard = batch.group.encode()
        for event, cursor in batch.each():
            session.push(Push([*_message(spec, event, prev), shard, cursor.encode()]))
            yield None

    try:
        if isinstance(watch, MergedWatch):
            await drain_batches(session, watch.batches(), deliver_merged)
        else:
            await drain_batches(session, watch.batches(), deliver)
    except asyncio.CancelledError:
        raise
    except AmberError as exc:
        session.push(Push([b"amber.watch.error", spec, f"{type(exc).__name__}: {exc}".encode()]))
    except Exception:
        log.exception("AMBER.WATCH %r failed", spec)
        session.push(
            Push([b"amber.watch.error", spec, b"internal error; the server log has the details"])
        )
    finally:
        watch.close()
        if session.watches.get(spec) is asyncio.current_task():
            del session.watches[spec]


@command("AMBER.WATCH", -2, "pubsub", group="amber")
def amber_watch(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Stream changes with revisions and diffs: ``AMBER.WATCH spec [FROM rev|cursor] [PREV]``."""
    spec = args[1]
    start: Start = None
    prev = local = False
    i = 2
    while i < len(args):
        option = args[i].upper()
        if option == b"FROM" and i + 1 < len(args):
            try:
                if b":" in args[i + 1]:
                    start = parse_cursor(args[i + 1].decode("utf-8", "replace"))
                else:
                    start = int(args[i + 1])
            except ValueError:
                raise CommandError("FROM takes a revision number") from None
            except AmberError as exc:
                raise CommandError(str(exc)) from None
            i += 2
        elif option == b"PREV":
            prev = True
            i += 1
        elif option == b"LOCAL":
            local = True
            i += 1
        else:
            raise syntax_error()
    if spec in session.watches:
        raise CommandError(f"already watching {spec.decode('utf-8', 'replace')}")
    check_watch_room(session, 1)
    table, key, prefix = watch_target(spec)
    shards = session.state.ctx.merged_watches()
    watch: Any
    if shards is not None and not local:
        watch = shards.open(table, key, prefix, start=start, prev_value=prev)
    elif isinstance(start, dict):
        raise CommandError("a shard cursor needs a sharded node (--shard-map)")
    elif table is None:
        watch = session.state.db.watch(start_revision=start, prev_value=prev)
    else:
        watch = session.state.db.table(table).watch(
            key, prefix=prefix, start_revision=start, prev_value=prev
        )
    task = asyncio.get_running_loop().create_task(_pump(session, spec, watch, prev, local))
    session.watches[spec] = task
    confirm = [b"amber.watch", spec, session.subscriptions]
    if local:
        confirm.append(watch.revision + 1)
    return Replies([Push(confirm)])


def _unwatch(session: Any, spec: bytes) -> None:
    task = session.watches.pop(spec, None)
    if task is not None:
        task.cancel()


@command("AMBER.UNWATCH", -1, "pubsub", group="amber")
def amber_unwatch(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Stop AMBER.WATCH streams (all without arguments)."""
    specs = args[1:] or sorted(session.watches)
    return _confirm_each(session, b"amber.unwatch", _unwatch, specs)
