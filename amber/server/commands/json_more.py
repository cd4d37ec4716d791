"""The rest of RedisJSON's everyday commands: arrays, objects, strings, MSET …

JSON.ARRAPPEND ARRINSERT ARRLEN ARRPOP ARRTRIM ARRINDEX, JSON.OBJKEYS OBJLEN,
JSON.STRLEN STRAPPEND, JSON.TOGGLE, JSON.CLEAR, JSON.MSET, JSON.RESP and
JSON.DEBUG MEMORY/HELP, with RedisJSON v2's reply shapes:

- a JSONPath (``$…``) answers an array with one entry per match — ``nil``
  where the match has the wrong type — and ``[]`` when nothing matches;
- a legacy path (``.a``, ``a``; the default when the path is optional)
  answers the value itself, and an error where RedisJSON gives one
  (``ERR Path '.a' does not exist or not an array``, ``WRONGTYPE wrong type
  of path value - expected string but found integer``).

Amber's paths (see :mod:`.documents`) match at most one value, so a JSONPath
reply has zero or one entries. A write reads the document and puts it back
whole, keeping its expiry: a read-modify-write (the solo route, atomic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...model import json_equal
from ...model.codec import pack
from .documents import _get, _with, json_set, parse_path
from .keys import split_key
from .registry import REGISTRY, CommandError, arity_error, syntax_error
from .replies import Simple
from .strings import parse_int
from .values import MISSING, dump_json, json_type, load_json

command = REGISTRY.command
OK = Simple("OK")
ROOT = b"."

_TYPE_WORDS = {list: "an array", dict: "an object", str: "a string", bool: "a bool"}


def _no_key() -> CommandError:
    return CommandError("could not perform this operation on a key that doesn't exist")


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _is(value: Any, kind: type) -> bool:
    """``value`` has JSON type ``kind`` (a bool is no number, a number no bool)."""
    if kind is bool:
        return type(value) is bool
    return isinstance(value, kind) and type(value) is not bool


def _expected(kind: type, found: Any) -> CommandError:
    name = {list: "array", dict: "object", str: "string", bool: "boolean"}[kind]
    return CommandError(
        f"wrong type of path value - expected {name} but found {json_type(found)}", "WRONGTYPE"
    )


def _modify(
    kv: Any,
    raw_key: bytes,
    raw_path: bytes,
    kind: type,
    change: Callable[[Any], tuple[Any, Any]],
) -> Any:
    """Apply ``change(value) -> (new value or MISSING for none, result)`` at the path.

    The value must have type ``kind``; the reply is shaped by the path's syntax.
    """
    table, key = split_key(raw_key)
    steps, legacy = parse_path(raw_path)
    doc = kv.get(table, key)
    if doc is MISSING:
        raise _no_key()
    found = _get(doc, steps)
    if found is MISSING or not _is(found, kind):
        if legacy:
            raise CommandError(
                f"Path '{_text(raw_path)}' does not exist or not {_TYPE_WORDS[kind]}"
            )
        return [] if found is MISSING else [None]
    new_value, result = change(found)
    if new_value is not MISSING:
        kv.put(table, key, _with(doc, steps, new_value), keep_ttl=True)
    return result if legacy else [result]


def _values(raw: list[bytes]) -> list[Any]:
    return [load_json(item) for item in raw]


# -- arrays ------------------------------------------------------------------------


@command("JSON.ARRAPPEND", -4, "write", keys=(1, 1, 1), group="json")
def arrappend(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.ARRAPPEND key path value [value …]``: the array's new length."""
    values = _values(args[3:])

    def change(array: Any) -> tuple[Any, Any]:
        updated = [*array, *values]
        return updated, len(updated)

    return _modify(kv, args[1], args[2], list, change)


@command("JSON.ARRINSERT", -5, "write", keys=(1, 1, 1), group="json")
def arrinsert(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.ARRINSERT key path index value [value …]``: insert before ``index``."""
    index = parse_int(args[3])
    values = _values(args[4:])

    def change(array: Any) -> tuple[Any, Any]:
        at = index + len(array) if index < 0 else index
        if not 0 <= at <= len(array):
            raise CommandError("index out of bounds")
        updated = [*array[:at], *values, *array[at:]]
        return updated, len(updated)

    return _modify(kv, args[1], args[2], list, change)


@command("JSON.ARRPOP", -2, "write", keys=(1, 1, 1), group="json")
def arrpop(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.ARRPOP key [path [index]]``: remove and return (as JSON) an element."""
    if len(args) > 4:
        raise syntax_error()
    raw_path = args[2] if len(args) > 2 else ROOT
    index = parse_int(args[3]) if len(args) > 3 else -1

    def change(array: Any) -> tuple[Any, Any]:
        if not array:
            return MISSING, None
        at = index + len(array) if index < 0 else index
        at = min(max(at, 0), len(array) - 1)
        popped = array[at]
        return [*array[:at], *array[at + 1 :]], dump_json(popped).encode()

    return _modify(kv, args[1], raw_path, list, change)


@command("JSON.ARRTRIM", 5, "write", keys=(1, 1, 1), group="json")
def arrtrim(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.ARRTRIM key path start stop``: keep ``[start, stop]`` (inclusive)."""
    start, stop = parse_int(args[3]), parse_int(args[4])

    def change(array: Any) -> tuple[Any, Any]:
        n = len(array)
        first = max(0, n + start) if start < 0 else start
        last = n + stop if stop < 0 else min(stop, n - 1)
        kept = [] if n == 0 or first >= n or first > last else list(array[first : last + 1])
        return kept, len(kept)

    return _modify(kv, args[1], args[2], list, change)


@command("JSON.ARRLEN", -2, "readonly", keys=(1, 1, 1), group="json")
def arrlen(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.ARRLEN key [path]``: the array's length."""
    return _measure(kv, args, list, len, missing="or", wrong="or")


@command("JSON.ARRINDEX", -4, "readonly", keys=(1, 1, 1), group="json")
def arrindex(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.ARRINDEX key path value [start [stop]]``: first index of value, or -1."""
    if len(args) > 6:
        raise syntax_error()
    value = load_json(args[3])
    start = parse_int(args[4]) if len(args) > 4 else 0
    stop = parse_int(args[5]) if len(args) > 5 else 0
    table, key = split_key(args[1])
    steps, legacy = parse_path(args[2])
    doc = kv.get(table, key)
    if doc is MISSING:
        raise CommandError(f"Path '{_text(args[2])}' does not exist")
    found = _get(doc, steps)
    if found is MISSING:
        if legacy:
            raise CommandError(f"Path '{_text(args[2])}' does not exist")
        return []
    if not _is(found, list):
        if legacy:
            raise _expected(list, found)
        return [None]
    n = len(found)
    first = max(0, n + start) if start < 0 else min(start, n)
    end = n if stop == 0 else (max(0, n + stop) if stop < 0 else min(stop, n))
    result = next((i for i in range(first, end) if json_equal(found[i], value)), -1)
    return result if legacy else [result]


def _read_key_path(kv: Any, args: list[bytes]) -> tuple[Any, list[Any], bool, bytes]:
    """``key [path]``: the document (or ``MISSING``), the path's steps, legacy or not, its text."""
    if len(args) > 3:
        raise syntax_error()
    raw_path = args[2] if len(args) > 2 else ROOT
    table, key = split_key(args[1])
    steps, legacy = parse_path(raw_path)
    return kv.get(table, key), steps, legacy, raw_path


# -- objects and strings --------------------------------------------------------------


def _measure(
    kv: Any,
    args: list[bytes],
    kind: type,
    measure: Callable[[Any], Any],
    *,
    missing: str,
    wrong: str,
) -> Any:
    """A read at an optional path: ``measure(value)`` where the value has type ``kind``.

    For a legacy path, RedisJSON answers a missing path (``missing``) and a
    value of another type (``wrong``) differently from command to command:
    ``"nil"``, ``"error"`` (does not exist), ``"or"`` (does not exist or not
    …), ``"wrongtype"`` (WRONGTYPE … expected … but found …).
    """
    doc, steps, legacy, raw_path = _read_key_path(kv, args)
    if doc is MISSING:
        if legacy:
            return None
        raise _no_key()
    found = _get(doc, steps)
    if not legacy:
        if found is MISSING:
            return []
        return [measure(found) if _is(found, kind) else None]
    if found is not MISSING and _is(found, kind):
        return measure(found)
    how = missing if found is MISSING else wrong
    if how == "nil":
        return None
    if how == "wrongtype":
        raise _expected(kind, found)
    tail = f" or not {_TYPE_WORDS[kind]}" if how == "or" else ""
    raise CommandError(f"Path '{_text(raw_path)}' does not exist{tail}")


@command("JSON.OBJKEYS", -2, "readonly", keys=(1, 1, 1), group="json")
def objkeys(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.OBJKEYS key [path]``: the object's member names."""
    return _measure(kv, args, dict, lambda o: [k.encode() for k in o], missing="nil", wrong="or")


@command("JSON.OBJLEN", -2, "readonly", keys=(1, 1, 1), group="json")
def objlen(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.OBJLEN key [path]``: how many members the object has."""
    return _measure(kv, args, dict, len, missing="nil", wrong="wrongtype")


@command("JSON.STRLEN", -2, "readonly", keys=(1, 1, 1), group="json")
def strlen(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.STRLEN key [path]``: the string's length in bytes (UTF-8)."""
    return _measure(kv, args, str, lambda s: len(s.encode()), missing="error", wrong="wrongtype")


@command("JSON.STRAPPEND", -3, "write", keys=(1, 1, 1), group="json")
def strappend(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.STRAPPEND key [path] json-string``: the string's new length in bytes."""
    if len(args) > 4:
        raise arity_error("json.strappend")
    raw_path, raw_value = (args[2], args[3]) if len(args) == 4 else (ROOT, args[2])
    suffix = load_json(raw_value)
    if type(suffix) is not str:
        raise CommandError(
            f"wrong type of value - expected string but found {json_type(suffix)} "
            "(the value is JSON: quote it, '\"text\"')",
            "WRONGTYPE",
        )

    def change(text: Any) -> tuple[Any, Any]:
        updated = text + suffix
        return updated, len(updated.encode())

    return _modify(kv, args[1], raw_path, str, change)


@command("JSON.TOGGLE", 3, "write", keys=(1, 1, 1), group="json")
def toggle(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.TOGGLE key path``: flip a boolean; legacy: "true"/"false", JSONPath: 1/0."""
    _steps, legacy = parse_path(args[2])

    def change(flag: Any) -> tuple[Any, Any]:
        flipped = not flag
        return flipped, (b"true" if flipped else b"false") if legacy else int(flipped)

    return _modify(kv, args[1], args[2], bool, change)


@command("JSON.CLEAR", -2, "write", keys=(1, 1, 1), group="json")
def clear(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.CLEAR key [path]``: empty an array/object, zero a number; how many changed."""
    if len(args) > 3:
        raise syntax_error()
    table, key = split_key(args[1])
    steps, _legacy = parse_path(args[2] if len(args) > 2 else ROOT)
    doc = kv.get(table, key)
    if doc is MISSING:
        raise _no_key()
    found = _get(doc, steps)
    if isinstance(found, dict | list) and found:
        cleared: Any = {} if isinstance(found, dict) else []
    elif type(found) in (int, float) and found != 0:
        cleared = 0
    else:
        return 0
    kv.put(table, key, _with(doc, steps, cleared), keep_ttl=True)
    return 1


# -- several keys, RESP form, memory ------------------------------------------------------


@command("JSON.MSET", -4, "write", keys=(1, -1, 3), group="json")
def mset(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.MSET key path value [key path value …]``: all or nothing, one commit."""
    if (len(args) - 1) % 3:
        raise arity_error("json.mset")
    triples = [args[i : i + 3] for i in range(1, len(args), 3)]
    for raw_key, raw_path, raw_value in triples:  # check everything before writing
        split_key(raw_key)
        parse_path(raw_path)
        load_json(raw_value)
    for raw_key, raw_path, raw_value in triples:
        if json_set(session, kv, [b"JSON.SET", raw_key, raw_path, raw_value]) is None:
            raise CommandError(
                f"Path '{_text(raw_path)}' of key '{_text(raw_key)}' has no parent to set "
                "it in; nothing was set"
            )
    return OK


def _resp(value: Any) -> Any:
    """RedisJSON's RESP form: arrays ``["[", …]``, objects ``["{", k, v, …]``."""
    if value is None:
        return None
    if type(value) is bool:
        return Simple("true" if value else "false")
    if type(value) is int:
        return value
    if type(value) is float:
        return value
    if type(value) is str:
        return value.encode()
    if isinstance(value, list):
        return [Simple("["), *(_resp(item) for item in value)]
    out: list[Any] = [Simple("{")]
    for name, member in value.items():
        out.extend((name.encode(), _resp(member)))
    return out


@command("JSON.RESP", -2, "readonly", keys=(1, 1, 1), group="json")
def resp(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.RESP key [path]``: the value as RESP types instead of JSON text."""
    doc, steps, legacy, raw_path = _read_key_path(kv, args)
    if doc is MISSING:
        return None
    found = _get(doc, steps)
    if legacy:
        if found is MISSING:
            raise CommandError(f"Path '{_text(raw_path)}' does not exist")
        return _resp(found)
    return [] if found is MISSING else [_resp(found)]


_DEBUG_HELP = [
    b"MEMORY <key> [path] - reports memory usage",
    b"HELP                - this message",
]


@command("JSON.DEBUG", -2, "readonly", keys=(2, 2, 1), group="json")
def debug(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.DEBUG MEMORY key [path]`` (bytes of Amber's stored encoding) | ``HELP``."""
    sub = args[1].upper()
    if sub == b"HELP" and len(args) == 2:
        return list(_DEBUG_HELP)
    if sub != b"MEMORY":
        raise CommandError("unknown subcommand - try `JSON.DEBUG HELP`")
    if not 3 <= len(args) <= 4:
        raise arity_error("json.debug")
    table, key = split_key(args[2])
    steps, legacy = parse_path(args[3] if len(args) > 3 else ROOT)
    doc = kv.get(table, key)
    if doc is MISSING:
        return 0 if legacy else []
    found = _get(doc, steps)
    if legacy:
        if found is MISSING:
            raise CommandError(f"Path '{_text(args[3])}' does not exist")
        return len(pack(found))
    return [] if found is MISSING else [len(pack(found))]
