"""Field filters for scans: a small, data-only condition language.

A filter is a list of conditions that must all hold (AND)::

    [("user.age", ">", 30), ("tags", "contains", "x"), ("email", "exists")]

It is plain data (lists/tuples, strings, JSON values), so it can come over
the wire as JSON; it is compiled into closures once and never evaluated as
code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidQuery, InvalidValue
from .values import freeze, json_equal

__all__ = ["OPERATORS", "compile_where"]

Predicate = Callable[[Any], bool]

OPERATORS: frozenset[str] = frozenset(
    ("=", "!=", "<", "<=", ">", ">=", "in", "contains", "exists", "prefix")
)
_ORDERING = frozenset(("<", "<=", ">", ">="))
_MISSING: Any = object()


def compile_where(spec: Sequence[Sequence[Any]] | None) -> Predicate | None:
    """Compile filter conditions into one predicate over a document.

    Each condition is ``(path, op, operand)``, or ``(path, "exists")`` which
    means ``(path, "exists", True)``. ``path`` is dotted (``"user.age"``);
    on an object a component names a member, on an array a component that
    is a canonical non-negative integer (``"0"``, ``"12"``, not ``"01"``)
    picks an element (``"tags.0"``). Anything else, or walking into a
    scalar, makes the field *missing*.

    Semantics:

    - ``=`` / ``!=``: JSON equality (:func:`~amber.model.values.json_equal`:
      ``1 == 1.0``, ``True != 1``, objects by members).
    - A missing field makes every op false, except ``!=`` (true, like
      MongoDB's ``$ne``) and ``exists False`` (true).
    - ``<`` ``<=`` ``>`` ``>=``: only a number against a number (``bool`` is
      not a number) or a string against a string (code point order); any
      other pairing is false. The operand must be a number or a string.
    - ``in``: the operand is a list; true if the field equals any element.
    - ``contains``: true if the field is an array with an element equal to
      the operand, or the field and the operand are strings and the operand
      is a substring of the field.
    - ``prefix``: the operand is a string; true if the field is a string
      that starts with it.
    - ``exists``: the operand is a bool; true if the field's presence
      matches it (a ``null`` value is present).

    Returns ``None`` for ``None`` or an empty spec (no filtering). Raises
    :class:`~amber.errors.InvalidQuery` naming the condition when the spec
    is malformed: an unknown op, a wrong number of items, a path that is not
    a non-empty dotted string of non-empty components, or an operand of the
    wrong kind (``in`` needs a list, ``prefix`` a string, ``exists`` a bool,
    an ordering op a number or string; every operand must be JSON).
    """
    if spec is None:
        return None
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence):
        raise InvalidQuery(
            f"a filter must be a list of conditions like [('age', '>', 30)], not {spec!r}"
        )
    predicates = [_compile_condition(index, cond) for index, cond in enumerate(spec)]
    if not predicates:
        return None
    if len(predicates) == 1:
        return predicates[0]
    return _all_of(tuple(predicates))


def _all_of(predicates: tuple[Predicate, ...]) -> Predicate:
    def match(doc: Any) -> bool:
        for predicate in predicates:  # noqa: SIM110 (a loop beats all() over a genexpr)
            if not predicate(doc):
                return False
        return True

    return match


def _compile_condition(index: int, cond: Any) -> Predicate:
    where = f"filter condition #{index} {cond!r}"
    if isinstance(cond, (str, bytes)) or not isinstance(cond, Sequence):
        raise InvalidQuery(f"{where}: a condition is a list or tuple (path, op, operand)")
    if len(cond) == 2:
        path, op = cond
        if op != "exists":
            raise InvalidQuery(
                f"{where}: only 'exists' may omit its operand; use (path, op, operand)"
            )
        operand: Any = True
    elif len(cond) == 3:
        path, op, operand = cond
    else:
        raise InvalidQuery(
            f"{where}: a condition has 3 items (path, op, operand), or 2 for (path, 'exists')"
        )
    if not isinstance(op, str) or op not in OPERATORS:
        raise InvalidQuery(f"{where}: unknown operator {op!r}; use one of {sorted(OPERATORS)}")
    if not isinstance(path, str) or not path:
        raise InvalidQuery(f"{where}: the path must be a non-empty dotted string like 'user.age'")
    parts = tuple(path.split("."))
    if not all(parts):
        raise InvalidQuery(f"{where}: the path {path!r} has an empty component")
    try:
        operand = freeze(operand)
    except InvalidValue as exc:
        raise InvalidQuery(f"{where}: the operand is not a JSON value: {exc}") from None
    return _build(where, _getter(parts), op, operand)


def _build(where: str, get: Callable[[Any], Any], op: str, operand: Any) -> Predicate:
    if op == "=":
        return lambda doc: (v := get(doc)) is not _MISSING and json_equal(v, operand)
    if op == "!=":
        return lambda doc: (v := get(doc)) is _MISSING or not json_equal(v, operand)
    if op in _ORDERING:
        return _ordering(where, get, op, operand)
    if op == "in":
        if not isinstance(operand, list):
            raise InvalidQuery(f"{where}: 'in' needs a list operand, not {operand!r}")
        choices = tuple(operand)
        return lambda doc: (
            (v := get(doc)) is not _MISSING and any(json_equal(v, choice) for choice in choices)
        )
    if op == "contains":
        return _contains(get, operand)
    if op == "prefix":
        if not isinstance(operand, str):
            raise InvalidQuery(f"{where}: 'prefix' needs a string operand, not {operand!r}")
        return lambda doc: type(v := get(doc)) is str and v.startswith(operand)
    # exists
    if type(operand) is not bool:
        raise InvalidQuery(f"{where}: 'exists' needs True or False, not {operand!r}")
    if operand:
        return lambda doc: get(doc) is not _MISSING
    return lambda doc: get(doc) is _MISSING


def _is_number(value: Any) -> bool:
    cls = type(value)
    return cls is int or cls is float


def _ordering(where: str, get: Callable[[Any], Any], op: str, operand: Any) -> Predicate:
    if _is_number(operand):
        same_kind: Callable[[Any], bool] = _is_number
    elif type(operand) is str:

        def same_kind(value: Any) -> bool:
            return type(value) is str

    else:
        raise InvalidQuery(f"{where}: {op!r} compares numbers or strings, not {operand!r}")
    if op == "<":
        return lambda doc: same_kind(v := get(doc)) and v < operand
    if op == "<=":
        return lambda doc: same_kind(v := get(doc)) and v <= operand
    if op == ">":
        return lambda doc: same_kind(v := get(doc)) and v > operand
    return lambda doc: same_kind(v := get(doc)) and v >= operand


def _contains(get: Callable[[Any], Any], operand: Any) -> Predicate:
    text = operand if type(operand) is str else None

    def contains(doc: Any) -> bool:
        value = get(doc)
        if isinstance(value, list):
            return any(json_equal(element, operand) for element in value)
        if text is not None and type(value) is str:
            return text in value
        return False

    return contains


def _index(part: str) -> int | None:
    """The list index a path component names, if any (JSON Pointer's rule)."""
    if part.isascii() and part.isdigit() and (part == "0" or part[0] != "0"):
        return int(part)
    return None


def _getter(parts: tuple[str, ...]) -> Callable[[Any], Any]:
    """A function returning the field at ``parts`` in a document, or ``_MISSING``."""
    steps = tuple((part, _index(part)) for part in parts)
    if len(steps) == 1 and steps[0][1] is None:
        name = steps[0][0]

        def get_member(doc: Any) -> Any:
            if isinstance(doc, dict):
                return doc.get(name, _MISSING)
            return _MISSING

        return get_member

    def get_path(doc: Any) -> Any:
        value = doc
        for name, index in steps:
            if isinstance(value, dict):
                value = value.get(name, _MISSING)
                if value is _MISSING:
                    return _MISSING
            elif index is not None and isinstance(value, list):
                if index >= len(value):
                    return _MISSING
                value = value[index]
            else:
                return _MISSING
        return value

    return get_path
