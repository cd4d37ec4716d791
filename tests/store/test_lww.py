"""The LWW document rules: joins converge whatever the order, and mean what the doc says."""

from __future__ import annotations

import random
from functools import reduce
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from amber.model.values import FrozenDict
from amber.store.lww import ABSENT, ZERO, LwwMeta, join, merge_delta

State = tuple[Any, LwwMeta, int | None]
EMPTY: State = (ABSENT, LwwMeta(ZERO, FrozenDict()), None)


def put(value: Any, stamp: tuple[int, int, str], expires: int | None = None) -> State:
    return (value, LwwMeta(stamp, FrozenDict()), expires)


def delete(stamp: tuple[int, int, str]) -> State:
    return put(ABSENT, stamp)


def fold(states: list[State]) -> State:
    return reduce(join, states, EMPTY)


def same(a: State, b: State) -> bool:
    return (
        (a[0] is ABSENT) == (b[0] is ABSENT) and (a[0] is ABSENT or a[0] == b[0]) and a[1:] == b[1:]
    )


stamps = st.tuples(st.integers(1, 30), st.integers(0, 2), st.sampled_from(["n1", "n2", "n3"]))
values = st.one_of(
    st.integers(0, 3),
    st.dictionaries(st.sampled_from("abc"), st.integers(0, 3), max_size=3),
)
patches = st.dictionaries(
    st.sampled_from("abcd"), st.one_of(st.none(), st.integers(0, 3)), min_size=1
)


@st.composite
def writes(draw: Any) -> list[State]:
    """Writes as states; every write has its own stamp (an HLC reading with the node id)."""
    unique = draw(st.lists(stamps, min_size=1, max_size=8, unique=True))
    out: list[State] = []
    for stamp in unique:
        kind = draw(st.sampled_from(["put", "delete", "merge"]))
        if kind == "put":
            value = draw(values)
            out.append(put(FrozenDict(value) if isinstance(value, dict) else value, stamp))
        elif kind == "delete":
            out.append(delete(stamp))
        else:
            out.append(merge_delta(draw(values), FrozenDict(draw(patches)), stamp))
    return out


@settings(max_examples=500, deadline=None)
@given(writes(), st.randoms(use_true_random=False))
def test_joins_converge_in_any_order_with_duplicates(ops: list[State], rnd: random.Random) -> None:
    expected = fold(ops)
    shuffled = ops + rnd.sample(ops, k=min(3, len(ops)))
    rnd.shuffle(shuffled)
    assert same(fold(shuffled), expected)
    assert same(join(expected, expected), expected)
    half = len(ops) // 2
    assert same(join(fold(ops[:half]), fold(ops[half:])), expected)


def test_a_later_put_replaces_older_fields_and_an_older_put_loses() -> None:
    s = fold(
        [
            put(FrozenDict({"a": 1}), (1, 0, "n1")),
            merge_delta({"a": 1}, FrozenDict({"b": 2}), (2, 0, "n2")),
        ]
    )
    assert s[0] == {"a": 1, "b": 2}
    assert fold([s[:], put(FrozenDict({"c": 3}), (3, 0, "n1"))])[0] == {"c": 3}
    assert join(s, put(FrozenDict({"z": 0}), (0, 5, "n3")))[0] == {"a": 1, "b": 2}


def test_concurrent_merges_of_different_fields_both_survive() -> None:
    base = put(FrozenDict({"status": "away"}), (1, 0, "n1"))
    one = merge_delta({"status": "away"}, FrozenDict({"status": "online"}), (5, 0, "n1"))
    two = merge_delta({"status": "away"}, FrozenDict({"device": "phone"}), (4, 0, "n2"))
    assert fold([base, one, two])[0] == {"status": "online", "device": "phone"}
    assert fold([two, one, base])[0] == {"status": "online", "device": "phone"}


def test_a_merge_newer_than_a_put_survives_it_arriving_late() -> None:
    merge = merge_delta(None, FrozenDict({"b": 2, "gone": None}), (5, 0, "n2"))
    late_put = put(FrozenDict({"a": 1, "gone": 1}), (3, 0, "n1"))
    value, meta, _ = fold([merge, late_put])
    assert value == {"a": 1, "b": 2}  # "gone" deleted by the newer merge
    assert meta.base == (3, 0, "n1") and set(meta.fields) == {"b", "gone"}


def test_a_delete_is_a_tombstone_that_older_writes_cannot_undo() -> None:
    state = fold([put(1, (1, 0, "n1")), delete((4, 0, "n2"))])
    assert state[0] is ABSENT and state[1].base == (4, 0, "n2")
    assert join(state, put(2, (3, 9, "n3")))[0] is ABSENT
    assert join(state, put(2, (4, 1, "n3")))[0] == 2
    revived = join(state, merge_delta(None, FrozenDict({"x": 1}), (5, 0, "n1")))
    assert revived[0] == {"x": 1}


def test_a_put_keeps_its_expiry_and_expiry_is_a_delete_at_that_time() -> None:
    state = fold(
        [
            put(FrozenDict({"a": 1}), (1, 0, "n1"), expires=99),
            merge_delta({"a": 1}, FrozenDict({"b": 1}), (2, 0, "n1")),
        ]
    )
    assert state[0] == {"a": 1, "b": 1} and state[2] == 99  # the merge kept the TTL
    expired = join(state, delete((99, 0, "")))  # what every replica's sweeper applies
    assert expired[0] is ABSENT
    assert join(expired, put(5, (99, 0, "n2")))[0] == 5  # a write after the expiry wins
