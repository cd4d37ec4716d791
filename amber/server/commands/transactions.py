"""MULTI/EXEC/WATCH with Redis semantics, and Amber's AMBER.TXN / AMBER.REV.

EXEC runs the queued commands against one :class:`~.scope.Scope` and commits
their writes as **one** batch (one revision, all or nothing, durable before
the reply). The batch's compares hold every WATCHed key at the revision seen
by WATCH and every key the block read at the revision it read: if a watched
key changed, EXEC answers a null array (Redis' abort); if only a key the
block read changed (another client got in between), the block runs again, so
EXEC is serializable. A command that fails at run time answers its error in
its slot and its writes are left out, as in Redis.
"""

from __future__ import annotations

from typing import Any

from ...cluster.slots import key_slot
from ...database import Compare, Database
from ...store.lww import stamp_text
from .keys import join_key, split_key
from .registry import REGISTRY, CommandError, Entries, Later
from .replies import NULL_ARRAY, Simple
from .scope import MustDrain, Scope
from .session import ExecPlan, error_reply
from .values import load_json

command = REGISTRY.command
OK = Simple("OK")


def _watched_changed(db: Database, watched: dict[tuple[str, str], int]) -> bool:
    for (table, key), revision in watched.items():
        entry = db.table(table).entry(key)
        if (0 if entry is None else entry.mod_revision) != revision:
            return True
    return False


@command("MULTI", 1, "fast nomulti", group="transactions")
def multi(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Start queueing commands for EXEC."""
    if session.multi is not None:
        raise CommandError("MULTI calls can not be nested")
    session.multi = []
    session.multi_failed = False
    session.multi_bytes = 0
    return OK


@command("DISCARD", 1, "fast nomulti", group="transactions")
def discard(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Drop the queued commands and the WATCHes."""
    if session.multi is None:
        raise CommandError("DISCARD without MULTI")
    session.multi = None
    session.multi_failed = False
    session.watched.clear()
    return OK


@command("WATCH", -2, "fast nomulti", keys=(1, -1, 1), group="transactions")
def watch(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Make the next EXEC abort if any of these keys changes before it."""
    if session.multi is not None:
        raise CommandError("WATCH inside MULTI is not allowed")
    for raw in args[1:]:
        table, key = split_key(raw)
        entry = kv.entry(table, key)
        session.watched.setdefault((table, key), 0 if entry is None else entry.mod_revision)
    return OK


@command("UNWATCH", 1, "fast", group="transactions")
def unwatch(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Forget every WATCHed key."""
    session.watched.clear()
    return OK


@command("EXEC", 1, "write nomulti", group="transactions")
def exec_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Run the queued commands as one atomic, durable transaction."""
    if session.multi is None:
        raise CommandError("EXEC without MULTI")
    if session.multi_failed:
        session.multi = None
        session.multi_failed = False
        session.watched.clear()
        raise CommandError("Transaction discarded because of previous errors.", "EXECABORT")
    queue = list(session.multi)
    watched = dict(session.watched)
    db = session.state.db
    if watched and kv.barrier:
        raise MustDrain  # our own writes in flight may touch a watched key
    if watched and _watched_changed(db, watched):
        session.multi = None
        session.watched.clear()
        return NULL_ARRAY

    def run(scope: Scope) -> Later:
        for (table, key), revision in watched.items():
            scope.watch(table, key, revision)
        replies: list[Any] = []
        spans: list[tuple[int, int]] = []
        for queued, queued_args in queue:
            mark = scope.mark()
            try:
                reply = queued.handler(session, scope, queued_args)
            except MustDrain:
                raise
            except Exception as exc:
                scope.rollback(mark)
                reply = error_reply(exc)
            spans.append((mark[0], len(scope.ops)))
            replies.append(reply)

        def finish(entries: Entries) -> list[Any]:
            return [
                r.finish(Entries(entries[a:b], entries.revision)) if type(r) is Later else r
                for r, (a, b) in zip(replies, spans, strict=True)
            ]

        return Later(finish)

    view = session.state.redis_cluster
    # A slot may have frozen or moved since queueing; with reads only there is
    # nothing for the store's slot guard to refuse, so check after them too
    # (still served then means served while they ran).
    moved = None if view is None else _not_served(view, queue)
    reply = run(kv) if moved is None else None
    if moved is None and view is not None and not kv.ops:
        moved = _not_served(view, queue)
    session.multi = None
    session.multi_failed = False
    session.watched.clear()
    if moved is not None:
        code, _, text = moved.partition(" ")
        raise CommandError(text, code)
    return ExecPlan(reply, run, lambda: _watched_changed(db, watched))


def _not_served(view: Any, queue: list[tuple[Any, list[bytes]]]) -> str | None:
    """Why this node cannot run the queued block now, as an error reply text, or None.

    Its keys must share one slot, as Redis Cluster requires of a
    transaction (one slot is what one group commits atomically, and what
    the store's slot guard refuses or takes as a whole), and that slot
    must be served here.
    """
    slots = {key_slot(key) for queued, a in queue for key in queued.key_args(a)}
    if len(slots) > 1:
        return "CROSSSLOT Keys in request don't hash to the same slot"
    return next((m for queued, a in queue if (m := view.not_served(queued, a)) is not None), None)


# -- Amber's own ------------------------------------------------------------------------

_TARGETS = ("mod_revision", "create_revision", "version", "value", "exists")


def _op_ttl_ms(op: list[Any]) -> int | None:
    """The optional ``{"ttl_ms": N}`` that ends a put or merge op."""
    if len(op) < 4:
        return None
    options = op[3]
    if not isinstance(options, dict) or set(options) - {"ttl_ms"}:
        raise CommandError(f'op options must be {{"ttl_ms": N}}, not {options!r}')
    ttl_ms = options.get("ttl_ms")
    if ttl_ms is None:
        return None
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise CommandError(f"ttl_ms must be a positive integer, not {ttl_ms!r}")
    return ttl_ms


@command("AMBER.TXN", 2, "write", group="amber")
def amber_txn(session: Any, kv: Any, args: list[bytes]) -> Any:
    """An etcd-style transaction as JSON; answers its revision.

    ``{"compares": [["users:1", "mod_revision", "=", 5], ...],
    "ops": [["put", "users:1", {...}], ["merge", "users:2", {...}],
    ["delete", "users:3"]]}``. A put or merge may end with options,
    ``{"ttl_ms": 1500}``, so a write with a TTL is one op (one event).
    Compare targets: ``mod_revision``, ``create_revision``, ``version``,
    ``value``, ``exists``; operators ``= != < <= > >=``. If a compare fails
    nothing changes and the reply is a ``CONDITION`` error naming it.

    With ``"stamps": true`` the reply is ``[revision, [stamp, ...]]``: on an
    eventual table, each write's hybrid-clock stamp ``ms.counter@node`` (the
    one last-writer-wins compares), in op order — so a client, e.g. the
    chaos checker, knows exactly which write a later one must beat; empty on
    a strong table.
    """
    spec = load_json(args[1])
    if not isinstance(spec, dict) or not isinstance(spec.get("ops"), list):
        raise CommandError('AMBER.TXN takes {"compares": [...], "ops": [...]}')
    stamps = spec.get("stamps", False)
    if not isinstance(stamps, bool):
        raise CommandError(f'"stamps" must be true or false, not {stamps!r}')
    for item in spec.get("compares") or []:
        if not isinstance(item, list) or len(item) != 4 or not isinstance(item[0], str):
            raise CommandError("a compare is [key, target, operator, operand]")
        if item[1] not in _TARGETS:
            raise CommandError(f"compare target must be one of {', '.join(_TARGETS)}")
        table, key = split_key(item[0].encode())
        kv.conditions.append(Compare(table, key, item[1], item[2], item[3]))
    for op in spec["ops"]:
        if not isinstance(op, list) or not op or not isinstance(op[0], str):
            raise CommandError(
                'an op is ["put", key, value], ["merge", key, patch] or ["delete", key]'
            )
        kind = op[0].lower()
        if len(op) < 2 or not isinstance(op[1], str):
            raise CommandError(f"op {kind!r} needs a key")
        table, key = split_key(op[1].encode())
        if kind == "put" and len(op) in (3, 4):
            kv.put(table, key, op[2], ttl_ms=_op_ttl_ms(op))
        elif kind == "merge" and len(op) in (3, 4):
            kv.merge(table, key, op[2], ttl_ms=_op_ttl_ms(op))
        elif kind in ("delete", "del") and len(op) == 2:
            kv.delete(table, key)
        else:
            raise CommandError(f"unknown or malformed op {op!r}")
    if not kv.ops:
        raise CommandError("AMBER.TXN needs at least one op")
    if stamps:
        return Later(lambda done: [done.revision, [stamp_text(s).encode() for s in done.stamps]])
    return Later(lambda entries: entries.revision)


@command("AMBER.REV", -1, "readonly fast", group="amber")
def amber_rev(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The database revision, or a key's revisions: ``AMBER.REV [key]``."""
    if len(args) == 1:
        return session.state.db.revision
    if len(args) != 2:
        raise CommandError("wrong number of arguments for 'amber.rev' command")
    table, key = split_key(args[1])
    entry = kv.entry(table, key)
    if entry is None:
        return None
    return {
        "key": join_key(table, key),
        "mod_revision": entry.mod_revision,
        "create_revision": entry.create_revision,
        "version": entry.version,
        "expires_at_ms": entry.expires_at_ms,
    }
