"""Table names and keys: what the store accepts as identifiers.

Both are checked on every write before anything changes, so the common case
(a short ASCII string) is a couple of C-level calls.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..config import Limits
from ..errors import InvalidName
from .values import DEFAULT_LIMITS

__all__ = ["DEFAULT_TABLE", "check_key", "check_table", "join_key"]

#: The table of a Redis key without a colon.
DEFAULT_TABLE = "default"

_TABLE_CHARS = re.compile(r"[A-Za-z0-9_.\-]+").fullmatch


@lru_cache(maxsize=1024)
def _table_chars_ok(name: str) -> bool:
    """A server checks the same few table names on every write: remember them."""
    return _TABLE_CHARS(name) is not None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_table(name: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``name`` as a plain ``str`` if it is a valid table name.

    A table name is 1 to ``limits.max_table_name`` characters from
    ``A-Z a-z 0-9 _ . -`` (ASCII only), so it is safe in a Redis key
    (``table:key``), a URL path segment and a log line. Raises
    :class:`~amber.errors.InvalidName` otherwise.
    """
    if type(name) is str and 0 < len(name) <= limits.max_table_name and _table_chars_ok(name):
        return name
    rule = f"1 to {limits.max_table_name} characters of A-Z a-z 0-9 _ . -"
    if not isinstance(name, str):
        raise InvalidName(
            f"table name must be a str, not {type(name).__name__} ({_shown(name)}): "
            f"a table name is {rule}"
        )
    plain = str.__str__(name)
    if 0 < len(plain) <= limits.max_table_name and _TABLE_CHARS(plain):
        return plain
    raise InvalidName(f"invalid table name {_shown(name)}: a table name is {rule}")


def check_key(key: object, limits: Limits = DEFAULT_LIMITS) -> str:
    """Return ``key`` as a plain ``str`` if it is a valid key.

    A key is any string of 1 to ``limits.max_key_bytes`` bytes once encoded
    as UTF-8; lone surrogates (which UTF-8 cannot carry) are rejected.
    Raises :class:`~amber.errors.InvalidName` otherwise.
    """
    if type(key) is str:
        # ASCII: characters are bytes. Otherwise at most 4 bytes a character
        # bounds the size, but the encode is still needed for surrogates.
        if key.isascii():
            if 0 < len(key) <= limits.max_key_bytes:
                return key
        elif len(key) * 4 <= limits.max_key_bytes:
            _check_key_text(key)
            return key
    return _check_key_slow(key, limits)


def _check_key_text(key: str) -> int:
    try:
        return len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidName(
            f"invalid key {_shown(key)}: not valid UTF-8 (lone surrogate at index {exc.start})"
        ) from None


def _check_key_slow(key: object, limits: Limits) -> str:
    rule = f"a key is a str of 1 to {limits.max_key_bytes} bytes of UTF-8"
    if not isinstance(key, str):
        raise InvalidName(f"key must be a str, not {type(key).__name__} ({_shown(key)}): {rule}")
    plain = str.__str__(key)
    if not plain:
        raise InvalidName(f"key must not be empty: {rule}")
    size = _check_key_text(plain)
    if size > limits.max_key_bytes:
        raise InvalidName(f"key {_shown(plain)} is {size} bytes of UTF-8: {rule}")
    return plain


def join_key(table: str, key: str) -> str:
    """The Redis key of ``(table, key)``: ``table:key``, or a bare key of ``default``.

    Here, not in the RESP layer, because the store hashes it too: a key's
    hash slot (Redis Cluster) is computed from this form.
    """
    if table == DEFAULT_TABLE and ":" not in key:
        return key
    return f"{table}:{key}"
