"""Hash commands on documents: a Redis hash is a JSON object (HSET HGET HDEL …).

``HSET users:1 name ada`` stores the document ``{"name":"ada"}``, so
``JSON.GET users:1`` shows it and ``JSON.SET users:1 $.age 36`` adds a field
``HGET`` reads: one document model, two ways in, not a second store.

- **Field values.** HSET writes JSON strings. A field holding any other JSON
  value (set through JSON.*) reads through HGET/HMGET/HGETALL/HVALS/HSCAN/
  HRANDFIELD as its compact JSON text — the rule GET follows for documents —
  so every field reads; ``HSTRLEN`` is that text's length in bytes.
- **Counters** (HINCRBY, HINCRBYFLOAT) keep the field's kind, as INCR does for
  keys: a string holding a number stays a string, a JSON number stays a
  number; a missing field starts as the string ``"0"``.
- **WRONGTYPE** for any key whose document is not an object: a string from
  SET, an array, a number … An empty object (``JSON.SET k $ '{}'``) is an
  empty hash that exists.
- **Deleting the last field** deletes the key, as Redis does.
- Writes read the document and put it back whole (``keep_ttl``: a hash write
  keeps the key's expiry, as in Redis): a read-modify-write, committed with a
  compare on the revision read (the solo route), so it is atomic and
  serializable and works inside MULTI.
"""

from __future__ import annotations

import decimal
import math
import random
from typing import Any

from ...model import thaw
from .keys import compile_glob, split_key
from .registry import REGISTRY, CommandError, arity_error, syntax_error
from .replies import Simple
from .scope import update_reply
from .strings import parse_int, update_blind
from .values import MISSING, WRONGTYPE, decode_text, to_bytes

command = REGISTRY.command
OK = Simple("OK")


def _field(raw: bytes) -> str:
    """A field name as text (fields are JSON object members, so UTF-8)."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise CommandError(
            "hash field is not valid UTF-8: Amber stores hashes as JSON objects"
        ) from None


def _read(kv: Any, raw_key: bytes) -> tuple[str, str, dict[str, Any] | None]:
    """``(table, key, object)``; None when the key is absent, WRONGTYPE if no object."""
    table, key = split_key(raw_key)
    doc = kv.get(table, key)
    if doc is MISSING:
        return table, key, None
    if not isinstance(doc, dict):
        raise WRONGTYPE
    return table, key, doc


def _pairs(args: list[bytes], name: str) -> list[tuple[str, str]]:
    """``field value …`` from ``args[2:]``; all checked before anything is written."""
    if len(args) < 4 or len(args) % 2:
        raise arity_error(name)
    return [(_field(args[i]), decode_text(args[i + 1])) for i in range(2, len(args), 2)]


def _set_fields(kv: Any, args: list[bytes], name: str) -> int:
    pairs = _pairs(args, name)
    table, key, doc = _read(kv, args[1])
    updated: dict[str, Any] = {} if doc is None else thaw(doc)
    added = 0
    for field, value in pairs:
        if field not in updated:
            added += 1
        updated[field] = value
    kv.put(table, key, updated, keep_ttl=True)
    return added


@command("HSET", -4, "write fast", keys=(1, 1, 1), group="hash")
def hset(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set hash fields; returns how many were new."""
    return _set_fields(kv, args, "hset")


@command("HMSET", -4, "write fast", keys=(1, 1, 1), group="hash")
def hmset(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set hash fields (deprecated form of HSET); OK."""
    _set_fields(kv, args, "hmset")
    return OK


@command("HSETNX", 4, "write fast", keys=(1, 1, 1), group="hash")
def hsetnx(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Set a field only if it does not exist; 1 if set."""
    field, value = _field(args[2]), decode_text(args[3])
    table, key, doc = _read(kv, args[1])
    if doc is not None and field in doc:
        return 0
    updated: dict[str, Any] = {} if doc is None else thaw(doc)
    updated[field] = value
    kv.put(table, key, updated, keep_ttl=True)
    return 1


@command("HGET", 3, "readonly fast", keys=(1, 1, 1), group="hash")
def hget(session: Any, kv: Any, args: list[bytes]) -> Any:
    """A field's value (non-string JSON values as their JSON text), or nil."""
    _table, _key, doc = _read(kv, args[1])
    if doc is None:
        return None
    value = doc.get(_field(args[2]), MISSING)
    return None if value is MISSING else to_bytes(value)


@command("HMGET", -3, "readonly fast", keys=(1, 1, 1), group="hash")
def hmget(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The values of several fields (nil for each missing one)."""
    fields = [_field(raw) for raw in args[2:]]
    _table, _key, doc = _read(kv, args[1])
    out: list[Any] = []
    for field in fields:
        value = MISSING if doc is None else doc.get(field, MISSING)
        out.append(None if value is MISSING else to_bytes(value))
    return out


@command("HGETALL", 2, "readonly", keys=(1, 1, 1), group="hash")
def hgetall(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Every field and value (a map in RESP3, a flat array in RESP2)."""
    _table, _key, doc = _read(kv, args[1])
    if doc is None:
        return {}
    return {field.encode(): to_bytes(value) for field, value in doc.items()}


@command("HKEYS", 2, "readonly", keys=(1, 1, 1), group="hash")
def hkeys(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Every field name."""
    _table, _key, doc = _read(kv, args[1])
    return [] if doc is None else [field.encode() for field in doc]


@command("HVALS", 2, "readonly", keys=(1, 1, 1), group="hash")
def hvals(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Every value."""
    _table, _key, doc = _read(kv, args[1])
    return [] if doc is None else [to_bytes(value) for value in doc.values()]


@command("HLEN", 2, "readonly fast", keys=(1, 1, 1), group="hash")
def hlen(session: Any, kv: Any, args: list[bytes]) -> Any:
    """How many fields the hash has."""
    _table, _key, doc = _read(kv, args[1])
    return 0 if doc is None else len(doc)


@command("HEXISTS", 3, "readonly fast", keys=(1, 1, 1), group="hash")
def hexists(session: Any, kv: Any, args: list[bytes]) -> Any:
    """1 if the field exists."""
    _table, _key, doc = _read(kv, args[1])
    return int(doc is not None and _field(args[2]) in doc)


@command("HSTRLEN", 3, "readonly fast", keys=(1, 1, 1), group="hash")
def hstrlen(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The length in bytes of a field's value as HGET returns it; 0 if missing."""
    _table, _key, doc = _read(kv, args[1])
    value = MISSING if doc is None else doc.get(_field(args[2]), MISSING)
    return 0 if value is MISSING else len(to_bytes(value))


@command("HDEL", -3, "write fast", keys=(1, 1, 1), group="hash")
def hdel(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Delete fields; returns how many existed. The last field's deletion deletes the key."""
    fields = [_field(raw) for raw in args[2:]]
    table, key, doc = _read(kv, args[1])
    if doc is None:
        return 0
    updated: dict[str, Any] = thaw(doc)
    removed = sum(1 for field in fields if updated.pop(field, MISSING) is not MISSING)
    if not removed:
        return 0
    if updated:
        kv.put(table, key, updated, keep_ttl=True)
    else:
        kv.delete(table, key)
    return removed


@command("HINCRBY", 4, "write fast", keys=(1, 1, 1), group="hash")
def hincrby(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Add an integer to a field (kept a string or a number, as it was)."""
    field = _field(args[2])
    delta = parse_int(args[3])
    table, key = split_key(args[1])
    kv.update(table, key, "hincrby2", field, delta)  # applied with the batch: no retry
    return update_reply(0)


@REGISTRY.blind("HINCRBY")
def hincrby_blind(session: Any, args: list[bytes]) -> Any:
    return update_blind(session, args[1], "hincrby2", _field(args[2]), parse_int(args[3]))


def _float(text: str, what: str) -> float:
    try:
        if text.strip() != text or not text or "_" in text:
            raise ValueError  # Python reads " 1" and "1_0"; Redis does not
        number = float(text)
    except ValueError:
        raise CommandError(what) from None
    if not math.isfinite(number):
        raise CommandError(what)
    return number


#: Enough digits for any sum of two finite doubles to 17 decimal places.
_SUM = decimal.Context(prec=400)
_PLACES = decimal.Decimal("1e-17")


def float_sum(base: str, delta: str) -> str:
    """``base + delta`` as Redis writes it: fixed point, 17 decimals, no trailing zeros.

    Redis adds in long double and prints ``%.17Lf`` trimmed, so ``0.1 + 0.2``
    is ``0.3`` and ``1e20`` is ``100000000000000000000``; adding the decimal
    texts exactly gives the same text where a binary double would say
    ``0.30000000000000004`` (Redis' long double shows noise past ~19
    significant digits that this does not copy).
    """
    total = _SUM.add(decimal.Decimal(base), decimal.Decimal(delta))
    text = format(total.quantize(_PLACES, context=_SUM), "f")
    text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


@command("HINCRBYFLOAT", 4, "write fast", keys=(1, 1, 1), group="hash")
def hincrbyfloat(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Add a float to a field; returns the new value as text."""
    field = _field(args[2])
    delta = args[3].decode("ascii", "replace")
    _float(delta, "value is not a valid float")
    table, key, doc = _read(kv, args[1])
    current = MISSING if doc is None else doc.get(field, MISSING)
    if current is MISSING:
        base, as_text = "0", True
    elif type(current) is str:
        _float(current, "hash value is not a float")
        base, as_text = current, True
    elif type(current) in (int, float):
        base, as_text = repr(current), False
    else:
        raise CommandError("hash value is not a float")
    text = float_sum(base, delta)
    result = float(text)
    if not math.isfinite(result):
        raise CommandError("increment would produce NaN or Infinity")
    updated: dict[str, Any] = {} if doc is None else thaw(doc)
    updated[field] = text if as_text else result
    kv.put(table, key, updated, keep_ttl=True)
    return text.encode()


@command("HRANDFIELD", -2, "readonly", keys=(1, 1, 1), group="hash")
def hrandfield(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``HRANDFIELD key [count [WITHVALUES]]``: random fields (negative count: repeats)."""
    if len(args) > 4 or (len(args) == 4 and args[3].upper() != b"WITHVALUES"):
        raise syntax_error()
    count = parse_int(args[2]) if len(args) > 2 else None
    with_values = len(args) == 4
    _table, _key, doc = _read(kv, args[1])
    if count is None:
        return None if not doc else random.choice(list(doc)).encode()
    if not doc or count == 0:
        return []
    fields = list(doc)
    if count > 0:
        chosen = random.sample(fields, min(count, len(fields)))
    else:
        chosen = random.choices(fields, k=-count)
    if not with_values:
        return [field.encode() for field in chosen]
    if session.protocol == 3:
        return [[field.encode(), to_bytes(doc[field])] for field in chosen]
    return [part for field in chosen for part in (field.encode(), to_bytes(doc[field]))]


@command("HSCAN", -3, "readonly", keys=(1, 1, 1), group="hash")
def hscan(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``HSCAN key cursor [MATCH p] [COUNT n] [NOVALUES]``: every field in one call.

    A hash is one document, so one reply holds all of it and the cursor
    returned is always 0 (Redis does the same for small hashes).
    """
    try:
        cursor = int(args[2])
        if cursor < 0:
            raise ValueError
    except ValueError:
        raise CommandError("invalid cursor") from None
    match = None
    novalues = False
    i = 3
    while i < len(args):
        option = args[i].upper()
        if option == b"MATCH" and i + 1 < len(args):
            match = compile_glob(_field(args[i + 1]))
            i += 2
        elif option == b"COUNT" and i + 1 < len(args):
            if parse_int(args[i + 1]) < 1:
                raise syntax_error()
            i += 2
        elif option == b"NOVALUES":
            novalues = True
            i += 1
        else:
            raise syntax_error()
    _table, _key, doc = _read(kv, args[1])
    out: list[bytes] = []
    for field, value in (doc or {}).items():
        if match is None or match(field):
            out.append(field.encode())
            if not novalues:
                out.append(to_bytes(value))
    return [b"0", out]
