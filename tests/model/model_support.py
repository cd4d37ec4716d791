"""Hypothesis strategies and helpers shared by the model tests."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from amber.model import FrozenDict, FrozenList

#: The machines running CI are slow and shared: no per-example deadline.
PROPERTY = settings(deadline=None, max_examples=300)

INT_MIN = -(2**63)
INT_MAX = 2**64 - 1

keys = st.text(max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(INT_MIN, INT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)

json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=25,
)

#: Objects never have a ``null`` member (arrays may hold anything, nulls and
#: objects with null members included): exactly the values a merge patch can
#: produce from any target.
expressible_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: (
        st.lists(json_values, max_size=4)
        | st.dictionaries(keys, children.filter(lambda v: v is not None), max_size=4)
    ),
    max_leaves=25,
)

json_objects: st.SearchStrategy[dict[str, Any]] = st.dictionaries(keys, json_values, max_size=5)


def assert_frozen(value: Any) -> None:
    """Every container in ``value`` is a FrozenDict/FrozenList, all the way down."""
    if isinstance(value, dict):
        assert type(value) is FrozenDict, f"{value!r} is a {type(value).__name__}"
        for member in value.values():
            assert_frozen(member)
    elif isinstance(value, (list, tuple)):
        assert type(value) is FrozenList, f"{value!r} is a {type(value).__name__}"
        for member in value:
            assert_frozen(member)


def assert_plain(value: Any) -> None:
    """Every container in ``value`` is an exact, mutable dict/list."""
    if isinstance(value, dict):
        assert type(value) is dict
        for member in value.values():
            assert_plain(member)
    elif isinstance(value, list):
        assert type(value) is list
        for member in value:
            assert_plain(member)


def strip_null_members(value: Any) -> Any:
    """``value`` without ``null`` object members, through objects only (not arrays)."""
    if isinstance(value, dict):
        return {k: strip_null_members(v) for k, v in value.items() if v is not None}
    return value


def nested_lists(depth: int) -> Any:
    """Containers nested ``depth`` deep: ``nested_lists(2) == [[]]``."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def nested_dicts(depth: int) -> Any:
    """``{"a": {"a": ... {}}}`` with ``depth`` objects."""
    value: Any = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value
