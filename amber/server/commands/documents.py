"""RedisJSON-compatible document commands: JSON.SET GET MGET DEL MERGE TYPE.

Paths: the root (``$`` or ``.``) and simple member paths — ``$.a.b[0]``,
``$['a b']`` (JSONPath: the reply is an array of matches) or ``.a.b`` /
``a.b`` (RedisJSON's legacy syntax: the reply is the value itself). Wildcards,
recursive descent, filters and slices answer an error. A change at a path
reads the document and writes it back in one atomic, compared write; a merge
at the root is a plain RFC 7396 merge (no read). JSON commands keep the
key's expiry.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ...model import merge_patch, thaw
from .keys import split_key
from .registry import REGISTRY, CommandError, syntax_error
from .replies import Simple
from .values import MISSING, dump_json, json_type, load_json

command = REGISTRY.command
OK = Simple("OK")

Path = list[str | int]

_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$-]*")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")


def parse_path(raw: bytes) -> tuple[Path, bool]:
    """``(steps, legacy)``: member names and list indexes from the root."""
    text = raw.decode("utf-8", "replace")
    if text.startswith("$"):
        rest, legacy = text[1:], False
    else:
        rest, legacy = text, True
        if rest and not rest.startswith((".", "[")):
            rest = "." + rest
    steps: Path = []
    i = 0
    while i < len(rest):
        c = rest[i]
        if c == ".":
            if rest.startswith("..", i):
                break
            if i + 1 == len(rest) and legacy and not steps:
                return steps, legacy  # "." alone: the root
            m = _NAME.match(rest, i + 1)
            if m is None:
                break
            steps.append(m.group(0))
            i = m.end()
        elif c == "[":
            m = _INDEX.match(rest, i)
            if m is not None:
                steps.append(int(m.group(1)))
                i = m.end()
                continue
            m = _QUOTED.match(rest, i)
            if m is None:
                break
            quoted = m.group(1) if m.group(1) is not None else m.group(2)
            steps.append(re.sub(r"\\(.)", r"\1", quoted))
            i = m.end()
        else:
            break
    else:
        return steps, legacy
    raise CommandError(
        f"JSON path '{text}' is not supported: Amber takes the root ($ or .) and member paths "
        "like $.a.b[0] (no wildcards, recursive descent, filters or slices)"
    )


def _get(doc: Any, path: Path) -> Any:
    node = doc
    for step in path:
        if isinstance(step, str):
            if not isinstance(node, dict) or step not in node:
                return MISSING
            node = node[step]
        else:
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                return MISSING
            node = node[step]
    return node


def _with(doc: Any, path: Path, value: Any) -> Any:
    """A copy of ``doc`` with ``value`` at ``path`` (MISSING: removed); MISSING if no parent."""
    if not path:
        return value
    root = thaw(doc)
    parent = _get(root, path[:-1])
    last = path[-1]
    if isinstance(last, str) and isinstance(parent, dict):
        if value is MISSING:
            parent.pop(last, None)
        else:
            parent[last] = value
        return root
    if isinstance(last, int) and isinstance(parent, list) and -len(parent) <= last < len(parent):
        if value is MISSING:
            del parent[last]
        else:
            parent[last] = value
        return root
    return MISSING


def _format(value: Any, indent: str, newline: str, space: str, level: int = 0) -> str:
    if not (indent or newline or space):
        return dump_json(value)
    pad, inner = newline + indent * level, newline + indent * (level + 1)
    if isinstance(value, dict) and value:
        items = [
            f"{inner}{json.dumps(k, ensure_ascii=False)}:{space}"
            f"{_format(v, indent, newline, space, level + 1)}"
            for k, v in value.items()
        ]
        return "{" + ",".join(items) + pad + "}"
    if isinstance(value, list) and value:
        items = [f"{inner}{_format(v, indent, newline, space, level + 1)}" for v in value]
        return "[" + ",".join(items) + pad + "]"
    return dump_json(value)


@command("JSON.GET", -2, "readonly", keys=(1, 1, 1), group="json")
def json_get(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.GET key [INDENT s] [NEWLINE s] [SPACE s] [NOESCAPE] [path …]``."""
    table, key = split_key(args[1])
    fmt = {"INDENT": "", "NEWLINE": "", "SPACE": ""}
    i = 2
    while i < len(args):
        option = args[i].upper().decode("utf-8", "replace")
        if option == "NOESCAPE":  # legacy flag, ignored by RedisJSON 2
            i += 1
        elif option in fmt and i + 1 < len(args):
            fmt[option] = args[i + 1].decode("utf-8", "replace")
            i += 2
        else:
            break
    paths = [(*parse_path(raw), raw) for raw in args[i:]] or [([], True, b".")]
    doc = kv.get(table, key)
    if doc is MISSING:
        return None

    def out(value: Any) -> bytes:
        return _format(value, fmt["INDENT"], fmt["NEWLINE"], fmt["SPACE"]).encode()

    if len(paths) == 1:
        steps, legacy, raw = paths[0]
        found = _get(doc, steps)
        if legacy:
            if found is MISSING:
                raise CommandError(f"Path '{raw.decode('utf-8', 'replace')}' does not exist")
            return out(found)
        return out([] if found is MISSING else [found])
    result: dict[str, Any] = {}
    any_legacy = all(legacy for _, legacy, _ in paths)
    for steps, _legacy, raw in paths:
        found = _get(doc, steps)
        name = raw.decode("utf-8", "replace")
        if any_legacy:
            if found is MISSING:
                raise CommandError(f"Path '{name}' does not exist")
            result[name] = found
        else:
            result[name] = [] if found is MISSING else [found]
    return out(result)


@command("JSON.MGET", -3, "readonly", keys=(1, -2, 1), group="json")
def json_mget(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.MGET key [key …] path``: one JSON text (or nil) per key."""
    steps, legacy = parse_path(args[-1])
    out: list[Any] = []
    for raw in args[1:-1]:
        table, key = split_key(raw)
        doc = kv.get(table, key)
        if doc is MISSING:
            out.append(None)
            continue
        found = _get(doc, steps)
        if legacy:
            out.append(None if found is MISSING else dump_json(found).encode())
        else:
            out.append(dump_json([] if found is MISSING else [found]).encode())
    return out


@command("JSON.SET", -4, "write", keys=(1, 1, 1), group="json")
def json_set(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.SET key path value [NX|XX]``: OK, or nil when the condition or parent fails."""
    table, key = split_key(args[1])
    steps, _legacy = parse_path(args[2])
    value = load_json(args[3])
    condition = b""
    if len(args) == 5:
        condition = args[4].upper()
        if condition not in (b"NX", b"XX"):
            raise syntax_error()
    elif len(args) > 5:
        raise syntax_error()
    if not steps and not condition:
        kv.put(table, key, value, keep_ttl=True)
        return OK
    doc = kv.get(table, key)
    if doc is MISSING:
        if steps:
            raise CommandError("new objects must be created at the root")
        if condition == b"XX":
            return None
        kv.put(table, key, value, keep_ttl=True)
        return OK
    present = _get(doc, steps) is not MISSING
    if (condition == b"NX" and present) or (condition == b"XX" and not present):
        return None
    updated = _with(doc, steps, value)
    if updated is MISSING:
        return None
    kv.put(table, key, updated, keep_ttl=True)
    return OK


@command("JSON.MERGE", 4, "write", keys=(1, 1, 1), group="json")
def json_merge(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.MERGE key path patch``: RFC 7396 merge at the path (null removes)."""
    table, key = split_key(args[1])
    steps, _legacy = parse_path(args[2])
    patch = load_json(args[3])
    if not steps:
        kv.merge(table, key, patch)
        return OK
    doc = kv.get(table, key)
    if doc is MISSING:
        raise CommandError("new objects must be created at the root")
    current = _get(doc, steps)
    merged = merge_patch(None if current is MISSING else current, patch)
    updated = _with(doc, steps, MISSING if merged is None else merged)
    if updated is MISSING:
        return None
    kv.put(table, key, updated, keep_ttl=True)
    return OK


def _delete(kv: Any, args: list[bytes]) -> int:
    table, key = split_key(args[1])
    steps, _legacy = parse_path(args[2]) if len(args) > 2 else ([], True)
    doc = kv.get(table, key)
    if doc is MISSING:
        return 0
    if not steps:
        kv.delete(table, key)
        return 1
    if _get(doc, steps) is MISSING:
        return 0
    kv.put(table, key, _with(doc, steps, MISSING), keep_ttl=True)
    return 1


@command("JSON.DEL", -2, "write", keys=(1, 1, 1), group="json")
def json_del(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.DEL key [path]``: how many values were deleted (0 or 1)."""
    if len(args) > 3:
        raise syntax_error()
    return _delete(kv, args)


@command("JSON.FORGET", -2, "write", keys=(1, 1, 1), group="json")
def json_forget(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Same as JSON.DEL."""
    if len(args) > 3:
        raise syntax_error()
    return _delete(kv, args)


@command("JSON.TYPE", -2, "readonly", keys=(1, 1, 1), group="json")
def json_type_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.TYPE key [path]``: object, array, string, integer, number, boolean, null."""
    if len(args) > 3:
        raise syntax_error()
    table, key = split_key(args[1])
    steps, legacy = parse_path(args[2]) if len(args) > 2 else ([], True)
    doc = kv.get(table, key)
    if doc is MISSING:
        return None if legacy else []
    found = _get(doc, steps)
    if legacy:
        return None if found is MISSING else Simple(json_type(found))
    return [] if found is MISSING else [Simple(json_type(found))]


@command("JSON.NUMINCRBY", 4, "write", keys=(1, 1, 1), group="json")
def json_numincrby(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``JSON.NUMINCRBY key path number``: add to a number; the new value as JSON."""
    table, key = split_key(args[1])
    steps, legacy = parse_path(args[2])
    delta = load_json(args[3])
    if isinstance(delta, bool) or not isinstance(delta, int | float):
        raise CommandError("the increment must be a number")
    doc = kv.get(table, key)
    if doc is MISSING:
        raise CommandError("could not perform this operation on a key that doesn't exist")
    current = _get(doc, steps)
    if isinstance(current, bool) or not isinstance(current, int | float):
        if legacy:
            raise CommandError("the value at the path is not a number", "WRONGTYPE")
        return b"[null]"
    result = current + delta
    kv.put(table, key, _with(doc, steps, result), keep_ttl=True)
    return dump_json(result if legacy else [result]).encode()
