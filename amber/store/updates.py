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

import re
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


_REDIS_INT = re.compile(rb"0|-?[1-9][0-9]{0,18}")


def redis_int(raw: bytes) -> int | None:
    """A signed 64-bit integer as Redis' string2ll reads one, else None.

    Only ``0`` or an optional ``-`` and digits without a leading zero: no
    spaces, ``+``, ``_``, ``01`` or ``-0`` (Python's int() reads all of these).
    """
    if _REDIS_INT.fullmatch(raw) is None:
        return None
    number = int(raw)
    return number if INT_MIN <= number <= INT_MAX else None


def _lenient_int(raw: bytes) -> int | None:
    """What ``incr``/``hincrby`` (the first names) read: redis_int plus leading zeros."""
    if raw.strip() != raw or raw[:1] == b"+" or b"_" in raw:
        return None
    try:
        number = int(raw)
    except ValueError:
        return None
    return number if INT_MIN <= number <= INT_MAX else None


def _counter(value: Any, what: str, strict: bool) -> tuple[int, bool]:
    """A stored counter's integer and whether it is kept as text."""
    if type(value) is str:
        if value.isdigit() and value.isascii() and len(value) < 19 and value[0] != "0":
            return int(value), True  # the common case, without the checks below
        number = (redis_int if strict else _lenient_int)(value.encode())
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


def _incr(current: Any, delta: int, strict: bool) -> tuple[Any, Any]:
    if current is ABSENT:
        return str(delta), delta
    if type(current) not in (str, int):
        raise Refused(WRONGTYPE_TEXT, "WRONGTYPE")
    base, as_text = _counter(current, "value is not an integer or out of range", strict)
    total = _add(base, delta)
    return (str(total) if as_text else total), total


def incr(current: Any, delta: int) -> tuple[Any, Any]:
    """INCR/INCRBY/DECR/DECRBY as first logged: also reads ``"01"`` (as 1)."""
    return _incr(current, delta, False)


def incr2(current: Any, delta: int) -> tuple[Any, Any]:
    """INCR/INCRBY/DECR/DECRBY: the counter plus ``delta``; absent counts as ``"0"``.

    A stored string must be an integer as Redis writes one (``"01"`` is refused).
    """
    return _incr(current, delta, True)


def append(current: Any, text: str) -> tuple[Any, Any]:
    """APPEND: the string with ``text`` added; answers the new length in UTF-8 bytes."""
    if current is ABSENT:
        current = ""
    elif type(current) is not str:
        raise Refused(WRONGTYPE_TEXT, "WRONGTYPE")
    value = current + text
    return value, len(value.encode())


def _hincrby(current: Any, field: str, delta: int, strict: bool) -> tuple[Any, Any]:
    if current is ABSENT:
        current = FrozenDict()
    elif type(current) is not FrozenDict:
        raise Refused(WRONGTYPE_TEXT, "WRONGTYPE")
    old = current.get(field, ABSENT)
    if old is ABSENT:
        base, as_text = 0, True
    else:
        base, as_text = _counter(old, "hash value is not an integer", strict)
    total = _add(base, delta)
    return FrozenDict({**current, field: str(total) if as_text else total}), total


def hincrby(current: Any, field: str, delta: int) -> tuple[Any, Any]:
    """HINCRBY as first logged: also reads ``"01"`` (as 1)."""
    return _hincrby(current, field, delta, False)


def hincrby2(current: Any, field: str, delta: int) -> tuple[Any, Any]:
    """HINCRBY: a hash (JSON object) field plus ``delta``, kept text or number as it was.

    A field holding a string must hold an integer as Redis writes one.
    """
    return _hincrby(current, field, delta, True)


#: Every update by the name its ops carry (see the module doc before changing one).
UPDATES: dict[str, Callable[..., tuple[Any, Any]]] = {
    "incr": incr,  # as logged before incr2: reads "01" as 1
    "incr2": incr2,
    "append": append,
    "hincrby": hincrby,  # as logged before hincrby2
    "hincrby2": hincrby2,
}

#: The argument types of each update: checked when an op is submitted, so a
#: function never meets arguments it cannot take while a batch applies.
SIGNATURES: dict[str, tuple[type, ...]] = {
    "incr": (int,),
    "incr2": (int,),
    "append": (str,),
    "hincrby": (str, int),
    "hincrby2": (str, int),
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
