"""Key commands: EXISTS TYPE TTL EXPIRE PERSIST RENAME COPY MEMORY SCAN KEYS DBSIZE …

SCAN walks tables in name order, then keys in key order. Its cursor names
the position to resume from, ``(table, key)``, so a key present for the whole
iteration is returned exactly once; it is an unsigned 64-bit number, as
Redis' (redis-cli --scan and --bigkeys parse it so), which the server maps to
the position (:class:`ScanCursors`). ``0`` starts and ends an iteration.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from ...model.codec import pack
from .keys import DEFAULT_TABLE, compile_glob, glob_literal_prefix, join_key, split_key
from .registry import REGISTRY, CommandError, arity_error, syntax_error
from .replies import Simple
from .strings import now_ms, parse_int
from .values import MISSING, type_name

command = REGISTRY.command
OK = Simple("OK")


@command("EXISTS", -2, "readonly fast", keys=(1, -1, 1), group="keyspace")
def exists(session: Any, kv: Any, args: list[bytes]) -> Any:
    """How many of the keys exist (a key named twice counts twice)."""
    count = 0
    for raw in args[1:]:
        table, key = split_key(raw)
        if kv.get(table, key) is not MISSING:
            count += 1
    return count


@command("TOUCH", -2, "readonly fast", keys=(1, -1, 1), group="keyspace")
def touch(session: Any, kv: Any, args: list[bytes]) -> Any:
    """How many of the keys exist (Amber keeps no access times to update)."""
    return exists(session, kv, args)


def _move(kv: Any, args: list[bytes], *, keep_source: bool, replace: bool) -> bool:
    """Write the source's value and expiry under the destination; False if it exists."""
    src, dst = split_key(args[1]), split_key(args[2])
    entry = kv.entry(*src)
    if entry is None:
        raise CommandError("no such key")
    if src == dst:
        return not keep_source  # RENAME k k is OK; COPY k k is refused by the caller
    if not replace and kv.entry(*dst) is not None:
        return False
    if entry.expires_at_ms is None:
        kv.put(*dst, entry.value)
    else:
        kv.put(*dst, entry.value, expires_at_ms=int(entry.expires_at_ms))
    if not keep_source:
        kv.delete(*src)
    return True


@command("RENAME", 3, "write", keys=(1, 2, 1), group="keyspace")
def rename(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Move a key's value and expiry to a new name (any table), replacing what is there."""
    _move(kv, args, keep_source=False, replace=True)
    return OK


@command("RENAMENX", 3, "write fast", keys=(1, 2, 1), group="keyspace")
def renamenx(session: Any, kv: Any, args: list[bytes]) -> Any:
    """RENAME only if the new name does not exist: 1 renamed, 0 not."""
    if split_key(args[1]) == split_key(args[2]):
        if kv.entry(*split_key(args[1])) is None:
            raise CommandError("no such key")
        return 0
    return int(_move(kv, args, keep_source=False, replace=False))


@command("COPY", -3, "write", keys=(1, 2, 1), group="keyspace")
def copy(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``COPY source destination [DB 0] [REPLACE]``: 1 copied, 0 not (destination exists)."""
    replace = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"REPLACE":
            replace = True
        elif option == b"DB" and i + 1 < len(args):
            i += 1
            if parse_int(args[i]) != 0:
                raise CommandError("DB index is out of range")
        else:
            raise syntax_error()
        i += 1
    if split_key(args[1]) == split_key(args[2]):
        raise CommandError("source and destination objects are the same")
    if kv.entry(*split_key(args[1])) is None:
        return 0
    return int(_move(kv, args, keep_source=True, replace=replace))


_MEMORY_HELP = [
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value (Amber: the bytes of the",
    "    key and of its value's stored encoding; SAMPLES is accepted and ignored).",
    "HELP",
    "    Prints this help.",
]


@command("MEMORY", -2, "readonly", keys=(2, 2, 1), group="server")
def memory(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``MEMORY USAGE key [SAMPLES n]``: the bytes of the key and its stored value | HELP."""
    sub = args[1].upper()
    if sub == b"HELP" and len(args) == 2:
        return [Simple(line) for line in _MEMORY_HELP]
    if sub != b"USAGE":
        name = args[1].decode("utf-8", "replace")
        raise CommandError(f"unknown subcommand '{name}'. Try MEMORY HELP.")
    if len(args) < 3:
        raise arity_error("memory|usage")
    i = 3
    while i < len(args):
        if args[i].upper() != b"SAMPLES" or i + 1 >= len(args):
            raise syntax_error()
        if parse_int(args[i + 1]) < 0:
            raise syntax_error()
        i += 2
    table, key = split_key(args[2])
    value = kv.get(table, key)
    if value is MISSING:
        return None
    return len(args[2]) + len(pack(value))


@command("TYPE", 2, "readonly fast", keys=(1, 1, 1), group="keyspace")
def type_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``string``, ``ReJSON-RL`` (any other document) or ``none``."""
    table, key = split_key(args[1])
    value = kv.get(table, key)
    return Simple("none" if value is MISSING else type_name(value))


def _ttl(kv: Any, raw: bytes, unit_ms: int) -> int:
    table, key = split_key(raw)
    entry = kv.entry(table, key)
    if entry is None:
        return -2
    if entry.expires_at_ms is None:
        return -1
    left: int = max(0, int(entry.expires_at_ms) - now_ms())
    return (left + unit_ms // 2) // unit_ms if unit_ms > 1 else left


@command("TTL", 2, "readonly fast", keys=(1, 1, 1), group="keyspace")
def ttl(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Seconds to live; -1 without expiry, -2 if the key does not exist."""
    return _ttl(kv, args[1], 1000)


@command("PTTL", 2, "readonly fast", keys=(1, 1, 1), group="keyspace")
def pttl(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Milliseconds to live; -1 without expiry, -2 if the key does not exist."""
    return _ttl(kv, args[1], 1)


def _expire_time(kv: Any, raw: bytes, unit_ms: int) -> int:
    table, key = split_key(raw)
    entry = kv.entry(table, key)
    if entry is None:
        return -2
    if entry.expires_at_ms is None:
        return -1
    return int(entry.expires_at_ms) // unit_ms


@command("EXPIRETIME", 2, "readonly fast", keys=(1, 1, 1), group="keyspace")
def expiretime(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The Unix time (seconds) the key expires at; -1 none, -2 absent."""
    return _expire_time(kv, args[1], 1000)


@command("PEXPIRETIME", 2, "readonly fast", keys=(1, 1, 1), group="keyspace")
def pexpiretime(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The Unix time (milliseconds) the key expires at; -1 none, -2 absent."""
    return _expire_time(kv, args[1], 1)


def _expire_flags(args: list[bytes]) -> set[bytes]:
    """NX/XX/GT/LT, checked as Redis does: every option first, then the conflicts."""
    flags: set[bytes] = set()
    for raw_flag in args[3:]:
        flag = raw_flag.upper()
        if flag not in (b"NX", b"XX", b"GT", b"LT"):
            raise CommandError(f"Unsupported option {raw_flag.decode('utf-8', 'replace')}")
        flags.add(flag)
    if b"NX" in flags and len(flags) > 1:
        raise CommandError("NX and XX, GT or LT options at the same time are not compatible")
    if {b"GT", b"LT"} <= flags:
        raise CommandError("GT and LT options at the same time are not compatible")
    return flags


def _expire(kv: Any, args: list[bytes], option: bytes, name: str) -> int:
    table, key = split_key(args[1])
    flags = _expire_flags(args)
    number = parse_int(args[2])
    if option in (b"EX", b"EXAT"):
        if abs(number) > 2**53:
            raise CommandError(f"invalid expire time in '{name}' command")
        number *= 1000
        option = b"PX" if option == b"EX" else b"PXAT"
    absolute = option == b"PXAT"
    now = now_ms()
    ms = number - now if absolute else number
    entry = kv.entry(table, key)
    if entry is None:
        return 0
    current = entry.expires_at_ms
    new_at = number if absolute else now + ms
    if b"NX" in flags and current is not None:
        return 0
    if b"XX" in flags and current is None:
        return 0
    if b"GT" in flags and (current is None or new_at <= current):
        return 0
    if b"LT" in flags and current is not None and new_at >= current:
        return 0
    if ms <= 0:
        kv.delete(table, key)
    elif absolute:  # stored as given: PEXPIRETIME answers exactly this
        kv.put(table, key, entry.value, expires_at_ms=number)
    else:
        kv.put(table, key, entry.value, ttl_ms=ms)
    return 1


@command("EXPIRE", -3, "write fast", keys=(1, 1, 1), group="keyspace")
def expire(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key's time to live in seconds; 1 if set."""
    return _expire(kv, args, b"EX", "expire")


@command("PEXPIRE", -3, "write fast", keys=(1, 1, 1), group="keyspace")
def pexpire(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key's time to live in milliseconds; 1 if set."""
    return _expire(kv, args, b"PX", "pexpire")


@command("EXPIREAT", -3, "write fast", keys=(1, 1, 1), group="keyspace")
def expireat(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Expire a key at a Unix time in seconds; 1 if set."""
    return _expire(kv, args, b"EXAT", "expireat")


@command("PEXPIREAT", -3, "write fast", keys=(1, 1, 1), group="keyspace")
def pexpireat(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Expire a key at a Unix time in milliseconds; 1 if set."""
    return _expire(kv, args, b"PXAT", "pexpireat")


@command("PERSIST", 2, "write fast", keys=(1, 1, 1), group="keyspace")
def persist(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Remove a key's expiry; 1 if it had one."""
    table, key = split_key(args[1])
    entry = kv.entry(table, key)
    if entry is None or entry.expires_at_ms is None:
        return 0
    kv.put(table, key, entry.value)
    return 1


# -- walking the keyspace ------------------------------------------------------------


class ScanCursors:
    """SCAN's cursors: unsigned 64-bit numbers naming a resume position ``(table, key)``.

    A position can be longer than 64 bits, so the server remembers it under a
    random cursor; the newest ``capacity`` positions are kept (an iteration
    needs only its last cursor), an older one answers ``ERR invalid cursor``.
    The same position always gets the same cursor while it is kept, so
    repeated iterations do not grow the table.
    """

    def __init__(self, capacity: int = 16_384) -> None:
        self.capacity = capacity
        self._positions: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._cursors: dict[tuple[str, str], int] = {}

    def encode(self, table: str, key: str) -> bytes:
        position = (table, key)
        cursor = self._cursors.get(position)
        if cursor is None:
            cursor = secrets.randbits(64) or 1
            while cursor in self._positions:
                cursor = secrets.randbits(64) or 1
            self._cursors[position] = cursor
            self._positions[cursor] = position
            if len(self._positions) > self.capacity:
                _, oldest = self._positions.popitem(last=False)
                del self._cursors[oldest]
        else:
            self._positions.move_to_end(cursor)
        return str(cursor).encode()

    def decode(self, raw: bytes) -> tuple[str, str] | None:
        """``(table, key)`` to resume from; None for cursor 0."""
        if not raw.isdigit() or len(raw) > 20 or int(raw) >= 2**64:
            raise CommandError("invalid cursor")
        cursor = int(raw)
        if cursor == 0:
            return None
        position = self._positions.get(cursor)
        if position is None:
            raise CommandError("invalid cursor")
        return position


def _candidate_tables(kv: Any, pattern: str | None) -> tuple[list[str], dict[str, str | None]]:
    """The tables a pattern can match in, and the key prefix within each."""
    tables = kv.tables()
    prefixes: dict[str, str | None] = {}
    literal = glob_literal_prefix(pattern) if pattern else ""
    if ":" in literal:
        table, _, key_prefix = literal.partition(":")
        if table in tables:
            prefixes[table] = key_prefix or None
        return list(prefixes), prefixes
    for table in tables:
        if table == DEFAULT_TABLE:
            prefixes[table] = literal or None
        elif (table + ":").startswith(literal) or literal.startswith(table + ":"):
            prefixes[table] = None
    return list(prefixes), prefixes


def iter_keys(
    kv: Any,
    pattern: str | None,
    start: tuple[str, str] | None = None,
    page: int = 1000,
) -> Iterator[tuple[str, str, Any]]:
    """Every live ``(table, key, value)`` from ``start`` on whose Redis key matches."""
    match: Callable[[str], bool] | None = compile_glob(pattern) if pattern else None
    tables, prefixes = _candidate_tables(kv, pattern)
    for table in tables:
        if start is not None and table < start[0]:
            continue
        begin = start[1] if start is not None and table == start[0] else None
        prefix = prefixes[table]
        while True:
            result = kv.scan(table, prefix=prefix, start=begin, limit=page)
            for key, value in result.items:
                if match is None or match(join_key(table, key)):
                    yield table, key, value
            if not result.more:
                break
            begin = result.next_start


@command("KEYS", 2, "readonly", group="keyspace")
def keys(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Every key matching a glob pattern (use SCAN on large databases)."""
    pattern = args[1].decode("utf-8", "replace")
    return [join_key(t, k) for t, k, _ in iter_keys(kv, None if pattern == "*" else pattern)]


@command("SCAN", -2, "readonly", group="keyspace")
def scan(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Iterate keys: ``SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]``."""
    cursors: ScanCursors = session.state.scan_cursors
    start = cursors.decode(args[1])
    pattern: str | None = None
    count = 10
    want_type: str | None = None
    i = 2
    while i < len(args):
        option = args[i].upper()
        if i + 1 >= len(args):
            raise syntax_error()
        value = args[i + 1]
        if option == b"MATCH":
            pattern = value.decode("utf-8", "replace")
            if pattern == "*":
                pattern = None
        elif option == b"COUNT":
            count = parse_int(value)
            if count < 1:
                raise syntax_error()
        elif option == b"TYPE":
            want_type = value.decode("utf-8", "replace").lower()
        else:
            raise syntax_error()
        i += 2
    found: list[str] = []
    examined = 0
    tables, prefixes = _candidate_tables(kv, pattern)
    match = compile_glob(pattern) if pattern else None
    for table in tables:
        if start is not None and table < start[0]:
            continue
        if examined >= count:
            return [cursors.encode(table, ""), found]
        begin = start[1] if start is not None and table == start[0] else None
        while True:
            page = kv.scan(table, prefix=prefixes[table], start=begin, limit=count - examined)
            for key, value in page.items:
                redis_key = join_key(table, key)
                if match is not None and not match(redis_key):
                    continue
                if want_type is not None and type_name(value).lower() != want_type:
                    continue
                found.append(redis_key)
            examined += len(page.items)
            if not page.more:
                break
            begin = page.next_start
            if examined >= count:
                assert begin is not None
                return [cursors.encode(table, begin), found]
    return [b"0", found]


@command("DBSIZE", 1, "readonly fast", group="keyspace")
def dbsize(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The number of keys."""
    return sum(kv.count(table) for table in kv.tables())


def _flush(kv: Any, args: list[bytes]) -> Any:
    for option in args[1:]:
        if option.upper() not in (b"ASYNC", b"SYNC"):
            raise syntax_error()
    for table in kv.tables():
        kv.drop_table(table)
    return OK


@command("FLUSHDB", -1, "write admin", group="keyspace")
def flushdb(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Delete every key of every table (one atomic write)."""
    return _flush(kv, args)


@command("FLUSHALL", -1, "write admin", group="keyspace")
def flushall(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Same as FLUSHDB: Amber has one database."""
    return _flush(kv, args)


@command("RANDOMKEY", 1, "readonly", group="keyspace")
def randomkey(session: Any, kv: Any, args: list[bytes]) -> Any:
    """A key (the first one; Amber keeps keys sorted, not hashed)."""
    for table, key, _ in iter_keys(kv, None, page=1):
        return join_key(table, key)
    return None
