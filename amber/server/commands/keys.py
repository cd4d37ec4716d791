"""Redis keys ↔ Amber's (table, key), and Redis glob patterns.

The Redis key ``table:key`` is table ``table`` and key ``key``: the split is
at the *first* colon, so ``users:42:profile`` is key ``42:profile`` of table
``users``. A Redis key without a colon lives in table ``default``. Going back,
a key of table ``default`` without a colon is shown bare, anything else as
``table:key``, so every key round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from ...model.names import DEFAULT_TABLE, join_key
from .registry import CommandError

__all__ = ["DEFAULT_TABLE", "compile_glob", "glob_literal_prefix", "join_key", "split_key"]


def split_key(raw: bytes) -> tuple[str, str]:
    """``b"users:42"`` → ``("users", "42")``; ``b"k"`` → ``("default", "k")``."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise CommandError(f"key {raw!r} is not valid UTF-8") from None
    table, sep, key = text.partition(":")
    if not sep:
        return DEFAULT_TABLE, text
    return table, key


_SPECIAL = frozenset("*?[\\")


def glob_literal_prefix(pattern: str) -> str:
    """The characters every match of ``pattern`` starts with."""
    for i, c in enumerate(pattern):
        if c in _SPECIAL:
            return pattern[:i]
    return pattern


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Callable[[str], bool]:
    """A matcher for Redis' glob syntax: ``* ? [abc] [^a-z] \\x``."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif c == "[":
            j = i + 1
            negate = j < n and pattern[j] == "^"
            if negate:
                j += 1
            chars: list[str] = []
            while j < n and pattern[j] != "]":
                if pattern[j] == "\\" and j + 1 < n:
                    j += 1
                    chars.append(re.escape(pattern[j]))
                elif j + 2 < n and pattern[j + 1] == "-" and pattern[j + 2] != "]":
                    lo, hi = sorted((pattern[j], pattern[j + 2]))
                    chars.append(f"{re.escape(lo)}-{re.escape(hi)}")
                    j += 2
                else:
                    chars.append(re.escape(pattern[j]))
                j += 1
            if not chars:
                out.append("[^\\s\\S]" if not negate else "[\\s\\S]")
            else:
                out.append(("[^" if negate else "[") + "".join(chars) + "]")
            i = j  # at "]" (or the end: an unclosed class ends the pattern)
        else:
            out.append(re.escape(c))
        i += 1
    regex = re.compile("".join(out), re.DOTALL)
    return lambda text: regex.fullmatch(text) is not None
