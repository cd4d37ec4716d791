"""Updates: a key's new value as a pure function of its current one, run at apply time.

INCR on a hot key used to read the value, compute, and commit with a
compare on what it read; with 50 clients on one key most commits failed the
compare and ran again (1.7k INCR/s). An :class:`~amber.store.batch.Update`
op names a function here instead, and the store runs it when it applies the
batch, on the value the key has then: the write cannot conflict, so it
group-commits like a SET. Applying the same log gives every replica, and
every replay, the same values, so **a function's meaning is fixed once its
name is in a log**: change behaviour under a new name.

A function gets the current value (:data:`ABSENT` when the key does not
exist or has expired) and the op's arguments, and returns ``(new value,
result)``: the new value (frozen JSON, or :data:`UNCHANGED` to write
nothing) and what the command answers. It raises :class:`Refused` to change
nothing and answer an error; the batch's other ops still apply, as a Redis
command that fails inside MULTI leaves the others applied. The key keeps
its expiry.

The rules here are Redis' (``INCR`` reads a decimal string or a JSON
integer and keeps its kind; ``APPEND`` needs a string; ``HINCRBY`` a hash
field); the RESP handlers build their ops from them and nothing else, so
the command and its replay cannot disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from ..model.values import FrozenDict

__all__ = ["ABSENT", "UNCHANGED", "UPDATES", "Refused", "check_update", "redis_int"]

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: The current value of a key that does not exist (or has expired).
ABSENT: Final = _Marker("ABSENT")
#: Returned as the new value: write nothing.
UNCHANGED: Final = _Marker("UNCHANGED")


class Refused(Exception):
    """The update does not apply to the current value; ``code`` and text are Redis'."""

    def __init__(self, message: str, code: str = "ERR") -> None:
        super().__init__(message)
        self.code = code

    def reply_text(self) -> str:
        return f"{self.code} {self}"


WRONGTYPE_TEXT = "Operation against a key holding the wrong kind of value"


def redis_int(raw: bytes) -> int | None:
    """A signed 64-bit integer as Redis reads one (no spaces, ``+`` or ``_``), else None."""
    if raw.strip() != raw or raw[:1] == b"+" or b"_" in raw:
        return None  # Python's int() reads these; Redis does not
    try:
        number = int(raw)
    except ValueError:
        return None
    return number if INT_MIN <= number <= INT_MAX else None


def _counter(value: Any, what: str) -> tuple[int, bool]:
    """A stored counter's integer and whether it is kept as text."""
    if type(value) is str:
        number = redis_int(value.encode())
        if number is None:
            raise Refused(what)
        return number, True
    if type(value) is int:
        return value, False
    raise Refused(what)


def _add(base: int, delta: int) -> int:
    total = base + delta
    if not INT_MIN <= total <= INT_MAX:
        raise Refused("increment or decrement would overflow")
    return total


def incr(current: Any, delta: int) -> tuple[Any, Any]:
    """INCR/INCRBY/DECR/DECRBY: the counter plus ``delta``; absent counts as ``"0"``."""
    if current is ABSENT:
        return str(delta), delta
    if type(current) not in (str, int):
        raise Refused(WRONGTYPE_TEXT, "WRONGTYPE")
    base, as_text = _counter(current, "value is not an integer or out of range")
    total = _add(base, delta)
    return (str(total) if as_text else total), total


def append(current: Any, text: str) -> tuple[Any, Any]:
    """APPEND: the string with ``text`` added; answers the new length in UTF-8 bytes."""
    if current is ABSENT:
        current = ""
    elif type(current) is not str:
        raise Refused(WRONGTYPE_TEXT, "WRONGTYPE")
    value = current + text
    return value, len(value.encode())


def hincrby(current: Any, field: str, delta: int) -> tuple[Any, Any]:
    """HINCRBY: a hash (JSON object) field plus ``delta``, kept text or number as it was."""
    if current is ABSENT:
        current = FrozenDict()
    elif type(current) is not FrozenDict:
        raise Refused(WRONGTYPE_TEXT, "WRONGTYPE")
    old = current.get(field, ABSENT)
    if old is ABSENT:
        base, as_text = 0, True
    else:
        base, as_text = _counter(old, "hash value is not an integer")
    total = _add(base, delta)
    return FrozenDict({**current, field: str(total) if as_text else total}), total


#: Every update by the name its ops carry (see the module doc before changing one).
UPDATES: dict[str, Callable[..., tuple[Any, Any]]] = {
    "incr": incr,
    "append": append,
    "hincrby": hincrby,
}

#: The argument types of each update: checked when an op is submitted, so a
#: function never meets arguments it cannot take while a batch applies.
SIGNATURES: dict[str, tuple[type, ...]] = {
    "incr": (int,),
    "append": (str,),
    "hincrby": (str, int),
}


def check_update(fn: str, args: tuple[Any, ...]) -> str | None:
    """Why ``fn(*args)`` cannot be an update op, or None."""
    kinds = SIGNATURES.get(fn)
    if kinds is None:
        return f"unknown update {fn!r} (known: {', '.join(sorted(UPDATES))})"
    if type(args) is not tuple or len(args) != len(kinds):
        return f"update {fn!r} takes {len(kinds)} arguments, not {args!r}"
    for arg, kind in zip(args, kinds, strict=True):
        if type(arg) is not kind or (type(arg) is int and not INT_MIN <= arg <= INT_MAX):
            return f"update {fn!r} takes ({', '.join(k.__name__ for k in kinds)}), not {args!r}"
    return None
