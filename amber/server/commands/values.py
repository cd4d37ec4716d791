"""How Redis values map to Amber's JSON documents.

- ``SET k v`` stores the JSON **string** ``v``: the bytes must be UTF-8 (else
  ``ERR value is not valid UTF-8``; send binary data base64-encoded).
- ``GET k`` returns a string value as is, and any other document as its
  compact JSON text (``{"a":1}``), so every key can be read with GET.
- ``INCR``/``DECR``/``INCRBY``/``INCRBYFLOAT`` work on strings holding a number
  and on JSON numbers, keeping the kind (a string stays a string);
  ``APPEND``/``STRLEN`` work on strings only; on a document they answer
  ``WRONGTYPE``. ``TYPE`` says ``string`` for a string and ``ReJSON-RL``
  (RedisJSON's name) for any other document.
- ``JSON.*`` commands store and return real documents.
- ``H*`` commands read and write a document that is a JSON object as a hash
  (see :mod:`.hashes`); ``GETEX`` reads like GET.
"""

from __future__ import annotations

import json
from typing import Any

from .registry import CommandError

__all__ = [
    "MISSING",
    "WRONGTYPE",
    "decode_text",
    "dump_json",
    "json_type",
    "load_json",
    "to_bytes",
    "type_name",
]

MISSING: Any = object()

WRONGTYPE = CommandError("Operation against a key holding the wrong kind of value", "WRONGTYPE")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def decode_text(raw: bytes) -> str:
    """A Redis string argument as text; Amber's values are JSON, so UTF-8."""
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise CommandError(
            "value is not valid UTF-8: Amber stores text and JSON documents "
            "(send binary data base64-encoded)"
        ) from None


def dump_json(value: Any) -> str:
    """Compact JSON text of a stored value."""
    return _dumps(value)


def to_bytes(value: Any) -> bytes:
    """What GET returns: a string as is, any other document as compact JSON."""
    if type(value) is str:
        return value.encode()
    return _dumps(value).encode()


def _reject_constant(name: str) -> Any:
    raise CommandError(f"invalid JSON: {name} is not a JSON value")


def load_json(raw: bytes) -> Any:
    """Parse a JSON argument, with a clear error."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except CommandError:
        raise
    except (ValueError, RecursionError) as exc:
        raise CommandError(f"invalid JSON: {exc}") from None


def json_type(value: Any) -> str:
    """RedisJSON's type names."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "null"


def type_name(value: Any) -> str:
    """What TYPE answers for a stored value."""
    return "string" if type(value) is str else "ReJSON-RL"
