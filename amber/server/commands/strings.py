"""String commands: GET SET MGET MSET INCR APPEND … (see ``values`` for the mapping)."""

from __future__ import annotations

import math
import time
from typing import Any

from ...database import Put, Update
from ...model import check_key, check_table, freeze
from ...store.updates import redis_int
from .coalesce import MAX_OPS, MAX_VALUE_CHARS
from .keys import DEFAULT_TABLE, split_key
from .registry import REGISTRY, CommandError, Later, syntax_error
from .replies import Simple
from .scope import update_reply
from .values import MISSING, WRONGTYPE, decode_text, to_bytes

command = REGISTRY.command
OK = Simple("OK")
#: An MSET with more pairs than a coalesced batch holds runs as its own commit.
MAX_BLIND_PAIRS = MAX_OPS // 2
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def parse_int(raw: bytes, what: str = "value is not an integer or out of range") -> int:
    number = redis_int(raw)
    if number is None:
        raise CommandError(what)
    return number


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def expire_ms(option: bytes, raw: bytes, name: str) -> int:
    """Milliseconds from now for EX/PX/EXAT/PXAT; may be <= 0 for a past time."""
    return expiry(option, raw, name)[0]


def expiry(option: bytes, raw: bytes, name: str) -> tuple[int, int | None]:
    """EX/PX/EXAT/PXAT as (milliseconds from now, the absolute Unix ms or ``None``).

    An absolute time is kept as given (``Put.expires_at_ms``), so EXPIRETIME
    answers exactly what was set; the relative part only decides "in the past".
    """
    number = parse_int(raw)
    if option in (b"EX", b"PX") and number <= 0:
        raise CommandError(f"invalid expire time in '{name}' command")
    at: int | None = None
    if option == b"EX":
        ms = number * 1000
    elif option == b"PX":
        ms = number
    else:
        at = number * 1000 if option == b"EXAT" else number
        ms = at - now_ms()
    if abs(ms) > 2**62 or (at is not None and not 0 < at < 2**62):
        raise CommandError(f"invalid expire time in '{name}' command")
    return ms, at


# -- GET / SET ------------------------------------------------------------------


@command("GET", 2, "readonly fast", keys=(1, 1, 1), group="string")
def get(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Get the value of a key."""
    # split_key, inlined: GET is the hottest read.
    try:
        table, sep, key = args[1].decode().partition(":")
    except UnicodeDecodeError:
        table, key = split_key(args[1])  # raises the error
    else:
        if not sep:
            table, key = DEFAULT_TABLE, table
    value = kv.get(table, key)
    if type(value) is str:  # the common case, without a call
        return value.encode()
    if value is MISSING:
        return None
    return to_bytes(value)


@command("SET", -3, "write", keys=(1, 1, 1), group="string")
def set_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key's string value, with NX/XX, expiry, KEEPTTL and GET."""
    table, key = split_key(args[1])
    value = decode_text(args[2])
    if len(args) == 3:
        kv.put(table, key, value)
        return OK
    condition = b""
    ttl_ms: int | None = None
    at: int | None = None
    keep_ttl = want_old = expiry_given = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option in (b"NX", b"XX") and not condition:
            condition = option
        elif option == b"GET" and not want_old:
            want_old = True
        elif option == b"KEEPTTL" and not expiry_given:
            keep_ttl = expiry_given = True
        elif option in (b"EX", b"PX", b"EXAT", b"PXAT") and not expiry_given and i + 1 < len(args):
            i += 1
            ttl_ms, at = expiry(option, args[i], "set")
            expiry_given = True
        else:
            raise syntax_error()
        i += 1
    old = MISSING
    if condition or want_old:
        old = kv.get(table, key)
    if want_old and old is not MISSING and type(old) is not str:
        raise WRONGTYPE
    reply: Any = (None if old is MISSING else to_bytes(old)) if want_old else OK
    if (condition == b"NX" and old is not MISSING) or (condition == b"XX" and old is MISSING):
        return reply if want_old else None
    if ttl_ms is not None and ttl_ms <= 0:  # an EXAT/PXAT in the past
        kv.delete(table, key)
    elif at is not None:
        kv.put(table, key, value, expires_at_ms=at)
    else:
        kv.put(table, key, value, ttl_ms=ttl_ms, keep_ttl=keep_ttl)
    return reply


@REGISTRY.blind("SET")
def set_blind(session: Any, args: list[bytes]) -> Any:
    """``SET k v`` without options: one put of a short string, no scope."""
    if len(args) != 3:
        return None
    table, key = split_key(args[1])
    value = decode_text(args[2])
    if len(value) > MAX_VALUE_CHARS:
        return None
    limits = session.state.db.config.limits
    if not value.isascii():
        value = freeze(value, limits)
    return [Put(check_table(table, limits), check_key(key, limits), value)], OK


@command("SETNX", 3, "write fast", keys=(1, 1, 1), group="string")
def setnx(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key only if it does not exist; 1 if set."""
    table, key = split_key(args[1])
    value = decode_text(args[2])
    if kv.get(table, key) is not MISSING:
        return 0
    kv.put(table, key, value)
    return 1


@command("SETEX", 4, "write", keys=(1, 1, 1), group="string")
def setex(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key with an expiry in seconds."""
    table, key = split_key(args[1])
    kv.put(table, key, decode_text(args[3]), ttl_ms=expire_ms(b"EX", args[2], "setex"))
    return OK


@command("PSETEX", 4, "write", keys=(1, 1, 1), group="string")
def psetex(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key with an expiry in milliseconds."""
    table, key = split_key(args[1])
    kv.put(table, key, decode_text(args[3]), ttl_ms=expire_ms(b"PX", args[2], "psetex"))
    return OK


@command("GETSET", 3, "write", keys=(1, 1, 1), group="string")
def getset(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a key and return its old value."""
    return set_(session, kv, [b"SET", args[1], args[2], b"GET"])


@command("GETDEL", 2, "write fast", keys=(1, 1, 1), group="string")
def getdel(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Get a key's value and delete it."""
    table, key = split_key(args[1])
    old = kv.get(table, key)
    if old is MISSING:
        return None
    if type(old) is not str:
        raise WRONGTYPE
    kv.delete(table, key)
    return to_bytes(old)


@command("GETEX", -2, "write fast", keys=(1, 1, 1), group="string")
def getex(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``GETEX key [EX s|PX ms|EXAT ts|PXAT ts|PERSIST]``: GET, then change the expiry.

    Like GET it reads any document (non-strings as JSON text), since EXPIRE
    works on any key. Redis' order: options are checked first (syntax error),
    then the key (nil if absent), then the time (``invalid expire time``); a
    time already past deletes the key. Without an option, or PERSIST on a key
    with no expiry, nothing is written.
    """
    table, key = split_key(args[1])
    option = b""
    raw_time = b""
    i = 2
    while i < len(args):
        word = args[i].upper()
        if word in (b"EX", b"PX", b"EXAT", b"PXAT") and not option and i + 1 < len(args):
            option, raw_time = word, args[i + 1]
            i += 2
        elif word == b"PERSIST" and not option:
            option = word
            i += 1
        else:
            raise syntax_error()
    entry = kv.entry(table, key)
    if entry is None:
        return None
    reply = to_bytes(entry.value)
    if option == b"PERSIST":
        if entry.expires_at_ms is not None:
            kv.put(table, key, entry.value)
        return reply
    if option:
        number = parse_int(raw_time)
        if number <= 0 or (option in (b"EX", b"EXAT") and number > INT_MAX // 1000):
            raise CommandError("invalid expire time in 'getex' command")
        ms, at = expiry(option, raw_time, "getex")
        if ms <= 0:
            kv.delete(table, key)
        elif at is not None:
            kv.put(table, key, entry.value, expires_at_ms=at)
        else:
            kv.put(table, key, entry.value, ttl_ms=ms)
    return reply


@command("MGET", -2, "readonly fast", keys=(1, -1, 1), group="string")
def mget(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Get the values of several keys."""
    out: list[Any] = []
    for raw in args[1:]:
        table, key = split_key(raw)
        value = kv.get(table, key)
        out.append(None if value is MISSING else to_bytes(value))
    return out


@command("MSET", -3, "write", keys=(1, -1, 2), group="string")
def mset(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set several keys at once (one atomic write, one revision).

    A key given more than once is written once, with its last value: no
    revision could show the earlier ones (Redis ends in the same state).
    """
    if len(args) % 2 == 0:
        raise CommandError("wrong number of arguments for 'mset' command")
    last = {args[i]: decode_text(args[i + 1]) for i in range(1, len(args), 2)}
    for raw_key, value in last.items():  # a key given twice is written once: its last value
        table, key = split_key(raw_key)
        kv.put(table, key, value)
    return OK


@REGISTRY.blind("MSET")
def mset_blind(session: Any, args: list[bytes]) -> Any:
    """``MSET`` of short strings: checked puts straight to the coalescer, as ``SET``'s."""
    if len(args) % 2 == 0 or len(args) // 2 > MAX_BLIND_PAIRS:
        return None
    limits = session.state.db.config.limits
    last: dict[bytes, str] = {}
    for i in range(1, len(args), 2):
        value = decode_text(args[i + 1])
        if len(value) > MAX_VALUE_CHARS:
            return None
        last[args[i]] = value if value.isascii() else freeze(value, limits)
    ops: list[Any] = []
    for raw_key, value in last.items():
        table, key = split_key(raw_key)
        ops.append(Put(check_table(table, limits), check_key(key, limits), value))
    return ops, OK


@command("MSETNX", -3, "write", keys=(1, -1, 2), group="string")
def msetnx(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set several keys only if none of them exists; 1 if set."""
    if len(args) % 2 == 0:
        raise CommandError("wrong number of arguments for 'msetnx' command")
    pairs = [(split_key(args[i]), decode_text(args[i + 1])) for i in range(1, len(args), 2)]
    if any(kv.get(t, k) is not MISSING for (t, k), _ in pairs):
        return 0
    for (table, key), value in pairs:
        kv.put(table, key, value)
    return 1


# -- counters and appends --------------------------------------------------------


def _incr(kv: Any, raw_key: bytes, delta: int) -> Any:
    """An update applied with the batch (``amber.store.updates.incr``): no read, no retry."""
    table, key = split_key(raw_key)
    kv.update(table, key, "incr2", delta)
    return update_reply(0)


def update_blind(session: Any, raw_key: bytes, fn: str, *args: Any) -> tuple[list[Any], Any]:
    """The blind form of an update command: one checked ``Update`` op, answered when applied."""
    table, key = split_key(raw_key)
    limits = session.state.db.config.limits
    return [Update(check_table(table, limits), check_key(key, limits), fn, args)], update_reply(0)


@command("INCR", 2, "write fast", keys=(1, 1, 1), group="string")
def incr(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Add 1 to a counter."""
    return _incr(kv, args[1], 1)


@command("DECR", 2, "write fast", keys=(1, 1, 1), group="string")
def decr(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Subtract 1 from a counter."""
    return _incr(kv, args[1], -1)


@command("INCRBY", 3, "write fast", keys=(1, 1, 1), group="string")
def incrby(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Add an integer to a counter."""
    return _incr(kv, args[1], parse_int(args[2]))


@command("DECRBY", 3, "write fast", keys=(1, 1, 1), group="string")
def decrby(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Subtract an integer from a counter."""
    delta = parse_int(args[2])
    if delta == INT_MIN:
        raise CommandError("decrement would overflow")
    return _incr(kv, args[1], -delta)


@REGISTRY.blind("INCR")
def incr_blind(session: Any, args: list[bytes]) -> Any:
    return update_blind(session, args[1], "incr2", 1)


@REGISTRY.blind("DECR")
def decr_blind(session: Any, args: list[bytes]) -> Any:
    return update_blind(session, args[1], "incr2", -1)


@REGISTRY.blind("INCRBY")
def incrby_blind(session: Any, args: list[bytes]) -> Any:
    return update_blind(session, args[1], "incr2", parse_int(args[2]))


@REGISTRY.blind("DECRBY")
def decrby_blind(session: Any, args: list[bytes]) -> Any:
    delta = parse_int(args[2])
    if delta == INT_MIN:
        raise CommandError("decrement would overflow")
    return update_blind(session, args[1], "incr2", -delta)


def _parse_float(text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise CommandError("value is not a valid float") from None
    if not math.isfinite(number):
        raise CommandError("value is not a valid float")
    return number


@command("INCRBYFLOAT", 3, "write fast", keys=(1, 1, 1), group="string")
def incrbyfloat(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Add a float to a counter."""
    table, key = split_key(args[1])
    delta = _parse_float(args[2].decode("ascii", "replace"))
    current = kv.get(table, key)
    if current is MISSING or type(current) is str:
        base = 0.0 if current is MISSING else _parse_float(current)
        as_text = True
    elif type(current) in (int, float):
        base, as_text = float(current), False
    else:
        raise WRONGTYPE
    result = base + delta
    if not math.isfinite(result):
        raise CommandError("increment would produce NaN or Infinity")
    text = repr(result)
    text = text[:-2] if text.endswith(".0") else text
    kv.put(table, key, text if as_text else result, keep_ttl=True)
    return text.encode()


@command("APPEND", 3, "write", keys=(1, 1, 1), group="string")
def append(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Append to a string; returns its new length in bytes."""
    table, key = split_key(args[1])
    kv.update(table, key, "append", decode_text(args[2]))
    return update_reply(0)


@REGISTRY.blind("APPEND")
def append_blind(session: Any, args: list[bytes]) -> Any:
    text = decode_text(args[2])
    if len(text) > MAX_VALUE_CHARS:
        return None
    return update_blind(session, args[1], "append", text)


@command("STRLEN", 2, "readonly fast", keys=(1, 1, 1), group="string")
def strlen(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The length of a string value in bytes."""
    table, key = split_key(args[1])
    value = kv.get(table, key)
    if value is MISSING:
        return 0
    if type(value) is not str:
        raise WRONGTYPE
    return len(value.encode())


@command("GETRANGE", 4, "readonly", keys=(1, 1, 1), group="string")
def getrange(session: Any, kv: Any, args: list[bytes]) -> Any:
    """A substring (by byte offsets, inclusive, negative from the end)."""
    table, key = split_key(args[1])
    start, end = parse_int(args[2]), parse_int(args[3])
    value = kv.get(table, key)
    if value is MISSING:
        return b""
    if type(value) is not str:
        raise WRONGTYPE
    data = value.encode()
    n = len(data)
    if start < 0:
        start = max(0, n + start)
    if end < 0:
        end = n + end
    end = min(end, n - 1)
    if start > end or n == 0:
        return b""
    return data[start : end + 1]


def _deleted_count(entries: list[Any]) -> int:
    return sum(1 for entry in entries if entry is not None)


@command("DEL", -2, "write", keys=(1, -1, 1), group="keyspace")
def delete(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Delete keys; returns how many existed."""
    for raw in args[1:]:
        table, key = split_key(raw)
        kv.delete(table, key)
    return Later(_deleted_count)


@command("UNLINK", -2, "write fast", keys=(1, -1, 1), group="keyspace")
def unlink(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Delete keys (same as DEL here); returns how many existed."""
    return delete(session, kv, args)
