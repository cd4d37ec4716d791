"""JSON-compatible values: validation, read-only containers, equality.

The store keeps every value as a *frozen* tree (:class:`FrozenDict`,
:class:`FrozenList`, ``str``, ``int``, ``float``, ``bool``, ``None``) so that
``get()`` can hand out the stored object itself, with no copy, and no reader
can change what other readers (or the log) see. :func:`freeze` is the one
gate into that world: it validates and deep-copies on the write path.
"""

from __future__ import annotations

from typing import Any, NoReturn, SupportsIndex

from ..config import Limits
from ..errors import InvalidValue

__all__ = ["DEFAULT_LIMITS", "FrozenDict", "FrozenList", "freeze", "json_equal", "thaw"]

DEFAULT_LIMITS = Limits()

#: msgpack's integer range: the widest that every stored int must round-trip.
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


def _read_only(obj: object, method: str) -> NoReturn:
    kind = type(obj).__name__
    raise TypeError(
        f"{kind} is read-only ({method}() is not allowed): values handed out by Amber are "
        f"shared with other readers; use amber.thaw(value) for a mutable copy"
    )


class FrozenDict(dict[str, Any]):
    """A ``dict`` that refuses to change, so the store can share it with readers.

    It is a real ``dict`` subclass: lookups run at dict speed, it compares
    equal to plain dicts, ``json.dumps``/``msgpack`` encode it as an object and
    ``repr`` looks like a dict. Every mutating method raises ``TypeError``.
    ``copy.copy`` gives a plain shallow ``dict`` and ``copy.deepcopy`` a plain
    deep copy (:func:`thaw`). The constructor does not validate: build stored
    values with :func:`freeze`.

    The guard stops accidents, not determined code: ``dict.__setitem__(d, k,
    v)`` or calling ``d.__init__(...)`` again still write. Blocking those
    would need a Python-level ``__init__``, which would slow down every
    decode of a stored value.
    """

    __slots__ = ()

    def __setitem__(self, key: str, value: Any) -> NoReturn:
        _read_only(self, "__setitem__")

    def __delitem__(self, key: str) -> NoReturn:
        _read_only(self, "__delitem__")

    def clear(self) -> NoReturn:
        _read_only(self, "clear")

    def pop(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only(self, "pop")

    def popitem(self) -> NoReturn:
        _read_only(self, "popitem")

    def setdefault(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only(self, "setdefault")

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only(self, "update")

    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _read_only(self, "__ior__")

    @classmethod
    def fromkeys(cls, iterable: Any, value: Any = None) -> FrozenDict:  # type: ignore[override]
        # dict.fromkeys would fill the new instance through __setitem__.
        return cls(dict.fromkeys(iterable, value))

    def __reduce__(self) -> tuple[type[FrozenDict], tuple[dict[str, Any]]]:
        # Rebuild through the constructor, never through the blocked mutators.
        return (FrozenDict, (dict(self),))

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        thawed: dict[str, Any] = thaw(self)
        return thawed


class FrozenList(list[Any]):
    """A ``list`` that refuses to change; see :class:`FrozenDict`."""

    __slots__ = ()

    def __setitem__(self, index: Any, value: Any) -> NoReturn:
        _read_only(self, "__setitem__")

    def __delitem__(self, index: SupportsIndex | slice) -> NoReturn:
        _read_only(self, "__delitem__")

    def append(self, value: Any) -> NoReturn:
        _read_only(self, "append")

    def extend(self, values: Any) -> NoReturn:
        _read_only(self, "extend")

    def insert(self, index: SupportsIndex, value: Any) -> NoReturn:
        _read_only(self, "insert")

    def pop(self, index: SupportsIndex = -1) -> NoReturn:
        _read_only(self, "pop")

    def remove(self, value: Any) -> NoReturn:
        _read_only(self, "remove")

    def clear(self) -> NoReturn:
        _read_only(self, "clear")

    def sort(self, *args: Any, **kwargs: Any) -> NoReturn:
        _read_only(self, "sort")

    def reverse(self) -> NoReturn:
        _read_only(self, "reverse")

    def __iadd__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _read_only(self, "__iadd__")

    def __imul__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        _read_only(self, "__imul__")

    def __reduce__(self) -> tuple[type[FrozenList], tuple[list[Any]]]:
        return (FrozenList, (list(self),))

    def __copy__(self) -> list[Any]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[Any]:
        thawed: list[Any] = thaw(self)
        return thawed


# --------------------------------------------------------------------- freeze


class _Reject(Exception):
    """Internal: raised deep in freeze, collects the path while unwinding.

    Collecting the path on the way out keeps the success path free of any
    path bookkeeping (try/except costs nothing in 3.11 until it fires).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str | int] = []


def _pointer(parts: list[str | int]) -> str:
    """RFC 6901 JSON Pointer from path parts collected leaf-first."""
    return "".join(
        "/" + str(part).replace("~", "~0").replace("/", "~1") for part in reversed(parts)
    )


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _check_text(text: str, what: str) -> None:
    """Reject strings msgpack/UTF-8 cannot carry (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Reject(
            f"{what} {_describe(text)} is not valid UTF-8 (lone surrogate at index {exc.start})"
        ) from None


def _bad_int(value: int) -> _Reject:
    return _Reject(f"integer {value} is out of range (allowed: -2**63 .. 2**64-1)")


def _bad_float(value: float) -> _Reject:
    return _Reject(f"float {value!r} is not JSON-compatible (NaN and infinities are rejected)")


def _too_deep(max_depth: int) -> _Reject:
    return _Reject(f"value is nested deeper than the limit of {max_depth} containers")


# Fill in our own fresh copies before anyone else sees them.
_dict_set = dict.__setitem__
_list_set = list.__setitem__


def _freeze_key(key: Any) -> str:
    if type(key) is str:
        _check_text(key, "key")
        return key
    if isinstance(key, str):
        plain = str.__str__(key)  # an exact str, whatever the subclass overrides
        _check_text(plain, "key")
        return plain
    raise _Reject(f"object key {_describe(key)} is not a string")


def _freeze_dict(src: dict[Any, Any], depth: int, max_depth: int) -> FrozenDict:
    if depth > max_depth:
        raise _too_deep(max_depth)
    # One validating pass; the copy is then a C-level dict copy, plus the few
    # members that needed converting. A valid FrozenDict comes back as is.
    changed: list[tuple[str, Any]] | None = None
    frozen: Any
    rebuild_keys = False
    for key, value in src.items():
        try:
            if (type(key) is not str or not key.isascii()) and _freeze_key(key) is not key:
                rebuild_keys = True
            cls = type(value)
            if cls is str:
                if not value.isascii():
                    _check_text(value, "string")
            elif cls is int:
                if not INT_MIN <= value <= INT_MAX:
                    raise _bad_int(value)
            elif cls is float:
                if value - value != 0.0:  # inf - inf and nan - nan are nan
                    raise _bad_float(value)
            elif value is None or cls is bool:
                pass
            else:
                if cls is dict or cls is FrozenDict:
                    frozen = _freeze_dict(value, depth + 1, max_depth)
                elif cls is list or cls is FrozenList:
                    frozen = _freeze_list(value, depth + 1, max_depth)
                else:
                    frozen = _freeze_any(value, depth, max_depth)
                if frozen is not value:
                    if changed is None:
                        changed = []
                    changed.append((key, frozen))
        except _Reject as exc:
            exc.parts.append(str.__str__(key) if isinstance(key, str) else repr(key))
            raise
    if rebuild_keys:
        return _rebuild_keys(src, dict(changed) if changed else {})
    if changed is None:
        if type(src) is FrozenDict:
            return src
        return FrozenDict(src)
    out = FrozenDict(src)
    for key, frozen in changed:
        _dict_set(out, key, frozen)
    return out


def _rebuild_keys(src: dict[Any, Any], replaced: dict[Any, Any]) -> FrozenDict:
    """Copy a dict whose keys include ``str`` subclasses, as plain ``str`` keys."""
    out = {_freeze_key(key): replaced.get(key, value) for key, value in src.items()}
    if len(out) != len(src):
        raise _Reject("object has keys that are equal once converted to plain str")
    return FrozenDict(out)


def _freeze_list(src: list[Any] | tuple[Any, ...], depth: int, max_depth: int) -> FrozenList:
    if depth > max_depth:
        raise _too_deep(max_depth)
    changed: list[tuple[int, Any]] | None = None
    frozen: Any
    index = 0
    try:
        for index, value in enumerate(src):
            cls = type(value)
            if cls is str:
                if not value.isascii():
                    _check_text(value, "string")
            elif cls is int:
                if not INT_MIN <= value <= INT_MAX:
                    raise _bad_int(value)
            elif cls is float:
                if value - value != 0.0:
                    raise _bad_float(value)
            elif value is None or cls is bool:
                pass
            else:
                if cls is dict or cls is FrozenDict:
                    frozen = _freeze_dict(value, depth + 1, max_depth)
                elif cls is list or cls is FrozenList:
                    frozen = _freeze_list(value, depth + 1, max_depth)
                else:
                    frozen = _freeze_any(value, depth, max_depth)
                if frozen is not value:
                    if changed is None:
                        changed = []
                    changed.append((index, frozen))
    except _Reject as exc:
        exc.parts.append(index)
        raise
    if changed is None:
        if type(src) is FrozenList:
            return src
        return FrozenList(src)
    out = FrozenList(src)
    for at, frozen in changed:
        _list_set(out, at, frozen)
    return out


def _freeze_any(value: Any, depth: int, max_depth: int) -> Any:
    """Freeze a value one container level below ``depth``."""
    cls = type(value)
    if cls is dict or cls is FrozenDict:
        return _freeze_dict(value, depth + 1, max_depth)
    if cls is list or cls is FrozenList or cls is tuple:
        return _freeze_list(value, depth + 1, max_depth)
    if cls is str:
        if not value.isascii():
            _check_text(value, "string")
        return value
    if cls is int:
        if not INT_MIN <= value <= INT_MAX:
            raise _bad_int(value)
        return value
    if cls is float:
        if value - value != 0.0:
            raise _bad_float(value)
        return value
    if value is None or cls is bool:
        return value
    # Subclasses become their base type, so nothing user-defined (an
    # overridden __eq__, __hash__ or __str__) ever lives in the store.
    if isinstance(value, str):
        return _freeze_any(str.__str__(value), depth, max_depth)
    if isinstance(value, int):  # bool cannot be subclassed; IntEnum lands here
        return _freeze_any(int.__int__(value), depth, max_depth)
    if isinstance(value, float):
        return _freeze_any(float.__float__(value), depth, max_depth)
    if isinstance(value, dict):
        return _freeze_dict(dict(dict.items(value)), depth + 1, max_depth)
    if isinstance(value, (list, tuple)):
        return _freeze_list(list(value), depth + 1, max_depth)
    hint = ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        hint = " (bytes are not JSON: store text, or base64-encode binary data)"
    elif isinstance(value, (set, frozenset)):
        hint = " (use a list)"
    raise _Reject(f"{_describe(value)} is not JSON-compatible{hint}")


def freeze(value: Any, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Validate a JSON-compatible value and return a frozen deep copy of it.

    Accepted: ``None``, ``bool``, ``int`` in -2**63 .. 2**64-1 (what msgpack
    carries), finite ``float``, ``str`` that is valid UTF-8 (no lone
    surrogates), ``dict`` with such ``str`` keys (becomes :class:`FrozenDict`)
    and ``list``/``tuple`` (becomes :class:`FrozenList`). Subclasses of
    ``str``/``int``/``float``/``dict``/``list``/``tuple`` are converted to the
    base type. Containers may nest ``limits.max_depth`` deep: a scalar has
    depth 0, ``[]`` depth 1, ``[[]]`` depth 2.

    The copy shares nothing mutable with the argument, so the caller may
    keep changing its object. Frozen parts of the argument that are already
    valid are reused as they are (they are immutable), which makes re-storing
    a value read from the store cheap.

    Raises :class:`~amber.errors.InvalidValue` whose ``path`` is the JSON
    Pointer (RFC 6901) of the offending member, ``""`` for the root.
    """
    try:
        if type(value) is dict:
            return _freeze_dict(value, 1, limits.max_depth)
        return _freeze_any(value, 0, limits.max_depth)
    except _Reject as exc:
        raise InvalidValue(exc.message, _pointer(exc.parts)) from None
    except RecursionError:
        # Only reachable when max_depth is set beyond Python's recursion limit.
        raise InvalidValue(
            f"value is nested too deeply to validate (limit {limits.max_depth})"
        ) from None


# ----------------------------------------------------------------- thaw, equal


def thaw(value: Any) -> Any:
    """A plain, mutable deep copy (``dict``/``list``) of a (frozen) value."""
    if isinstance(value, dict):
        return {key: thaw(member) for key, member in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(member) for member in value]
    return value


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON sees it, which Python's ``==`` gets wrong for booleans.

    ``True`` never equals ``1`` (nor ``False`` ``0``), while ``1 == 1.0``;
    objects compare by members whatever their order or frozen-ness; arrays
    (``list``/``tuple``) compare element by element.
    """
    if a is b:
        return True
    ta = type(a)
    tb = type(b)
    if ta is tb and (ta is str or ta is int or ta is float):
        return a == b  # type: ignore[no-any-return]
    if ta is bool or tb is bool:
        return False  # True and False are singletons: equal ones were caught by `is`
    if isinstance(a, dict):
        if not isinstance(b, dict) or len(a) != len(b):
            return False
        for key, member in a.items():
            other = b.get(key, _ABSENT)
            if other is _ABSENT or not json_equal(member, other):
                return False
        return True
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)):
        return isinstance(b, (int, float)) and a == b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if a is None or b is None:
        return False
    return bool(a == b)


_ABSENT: Any = object()
