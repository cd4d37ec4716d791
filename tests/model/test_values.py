"""Frozen containers, freeze/thaw and JSON equality.

Measured on the CI machine (2 shared vCPUs, Python 3.11; a JSON
``loads(dumps(doc))`` round trip of the same docs takes 7 us / 300 us there):
``freeze`` of a 104-byte doc ~2.1 us, of a 9.9 KB doc (85 objects in a list)
~200 us; re-freezing an already frozen value allocates nothing and takes
~1.5 us / ~140 us. See ``test_model_perf.py`` (marked slow) to re-measure.
"""

from __future__ import annotations

import copy
import enum
import json
import math
import pickle
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from model_support import (
    INT_MAX,
    INT_MIN,
    PROPERTY,
    assert_frozen,
    assert_plain,
    json_values,
    nested_dicts,
    nested_lists,
)

from amber.config import Limits
from amber.errors import InvalidArgument, InvalidValue
from amber.model import DEFAULT_LIMITS, FrozenDict, FrozenList, freeze, json_equal, thaw

# ------------------------------------------------------------ frozen containers

DICT_MUTATIONS: list[tuple[str, Callable[[Any], object]]] = [
    ("__setitem__", lambda d: d.__setitem__("a", 2)),
    ("__delitem__", lambda d: d.__delitem__("a")),
    ("clear", lambda d: d.clear()),
    ("pop", lambda d: d.pop("a")),
    ("pop", lambda d: d.pop("missing", None)),
    ("popitem", lambda d: d.popitem()),
    ("setdefault", lambda d: d.setdefault("z", 1)),
    ("update", lambda d: d.update({"a": 3})),
    ("update", lambda d: d.update(z=3)),
    ("__ior__", lambda d: d.__ior__({"z": 1})),
]

LIST_MUTATIONS: list[tuple[str, Callable[[Any], object]]] = [
    ("__setitem__", lambda lst: lst.__setitem__(0, 9)),
    ("__setitem__", lambda lst: lst.__setitem__(slice(0, 1), [9])),
    ("__delitem__", lambda lst: lst.__delitem__(0)),
    ("__delitem__", lambda lst: lst.__delitem__(slice(None))),
    ("append", lambda lst: lst.append(4)),
    ("extend", lambda lst: lst.extend([4])),
    ("insert", lambda lst: lst.insert(0, 4)),
    ("pop", lambda lst: lst.pop()),
    ("remove", lambda lst: lst.remove(1)),
    ("clear", lambda lst: lst.clear()),
    ("sort", lambda lst: lst.sort()),
    ("reverse", lambda lst: lst.reverse()),
    ("__iadd__", lambda lst: lst.__iadd__([4])),
    ("__imul__", lambda lst: lst.__imul__(2)),
]


@pytest.mark.parametrize(("method", "mutate"), DICT_MUTATIONS)
def test_frozen_dict_refuses_every_mutation(method: str, mutate: Callable[[Any], object]) -> None:
    d = freeze({"a": 1, "b": [1]})
    with pytest.raises(TypeError, match="read-only") as info:
        mutate(d)
    assert method in str(info.value)
    assert "amber.thaw(value)" in str(info.value)
    assert d == {"a": 1, "b": [1]}


@pytest.mark.parametrize(("method", "mutate"), LIST_MUTATIONS)
def test_frozen_list_refuses_every_mutation(method: str, mutate: Callable[[Any], object]) -> None:
    lst = freeze([3, 1, 2])
    with pytest.raises(TypeError, match="read-only") as info:
        mutate(lst)
    assert method in str(info.value)
    assert "amber.thaw(value)" in str(info.value)
    assert lst == [3, 1, 2]


def test_augmented_assignment_is_refused_and_leaves_the_value() -> None:
    d = freeze({"a": 1})
    lst = freeze([1])
    with pytest.raises(TypeError):
        d |= {"b": 2}
    with pytest.raises(TypeError):
        lst += [2]
    with pytest.raises(TypeError):
        lst *= 2
    assert d == {"a": 1}
    assert lst == [1]


def test_frozen_containers_behave_like_dict_and_list_for_readers() -> None:
    doc = freeze({"user": "ada", "tags": ["x", "y"], "n": None})
    assert doc == {"user": "ada", "tags": ["x", "y"], "n": None}
    plain = {"user": "ada", "tags": ["x", "y"], "n": None}
    assert plain == doc  # the reflected comparison too
    assert doc["tags"] == ["x", "y"]
    assert isinstance(doc, dict)
    assert isinstance(doc["tags"], list)
    assert repr(doc) == "{'user': 'ada', 'tags': ['x', 'y'], 'n': None}"
    assert repr(doc["tags"]) == "['x', 'y']"
    assert json.dumps(doc) == '{"user": "ada", "tags": ["x", "y"], "n": null}'
    assert json.dumps(doc, indent=1) == json.dumps(thaw(doc), indent=1)
    assert doc.get("missing", 5) == 5
    assert list(doc) == ["user", "tags", "n"]
    # Non-mutating operators give plain, new containers.
    assert type(doc | {"z": 1}) is dict
    assert type(doc["tags"] + ["z"]) is list
    assert type(doc["tags"][:1]) is list
    assert type(doc.copy()) is dict


def test_frozen_containers_are_unhashable_and_slotted() -> None:
    with pytest.raises(TypeError):
        hash(FrozenDict())
    with pytest.raises(TypeError):
        hash(FrozenList())
    assert not hasattr(FrozenDict(), "__dict__")
    assert not hasattr(FrozenList(), "__dict__")


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_round_trip_keeps_frozen_types(protocol: int) -> None:
    doc = freeze({"a": [1, {"b": [2.5, None, True]}], "c": {}})
    back = pickle.loads(pickle.dumps(doc, protocol=protocol))
    assert back == doc
    assert_frozen(back)
    assert type(pickle.loads(pickle.dumps(freeze([1, [2]]), protocol=protocol))) is FrozenList


def test_copy_gives_plain_shallow_copy_and_deepcopy_a_thawed_one() -> None:
    doc = freeze({"a": {"b": [1]}, "l": [[1]]})
    shallow = copy.copy(doc)
    assert type(shallow) is dict
    assert shallow == doc
    assert shallow["a"] is doc["a"]
    deep = copy.deepcopy(doc)
    assert deep == doc
    assert_plain(deep)
    deep["a"]["b"].append(2)  # mutable all the way down
    assert doc["a"]["b"] == [1]
    assert type(copy.copy(doc["l"])) is list
    assert copy.copy(doc["l"])[0] is doc["l"][0]
    assert_plain(copy.deepcopy(doc["l"]))


def test_fromkeys_builds_a_frozen_dict() -> None:
    d = FrozenDict.fromkeys(["a", "b"], 0)
    assert type(d) is FrozenDict
    assert d == {"a": 0, "b": 0}


# ---------------------------------------------------------------------- freeze


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        INT_MIN,
        INT_MAX,
        0.0,
        -0.0,
        1.5,
        -1e308,
        5e-324,
        "",
        "text",
        "ünïcødé ✓ 😀",
        [],
        {},
    ],
)
def test_freeze_accepts_json_scalars_and_empty_containers(value: Any) -> None:
    frozen = freeze(value)
    assert json_equal(frozen, value)
    expected: dict[type, type] = {dict: FrozenDict, list: FrozenList}
    assert type(frozen) is expected.get(type(value), type(value))


def test_negative_zero_keeps_its_sign() -> None:
    assert math.copysign(1.0, freeze(-0.0)) == -1.0
    assert math.copysign(1.0, freeze({"z": -0.0})["z"]) == -1.0


@pytest.mark.parametrize(
    ("value", "path", "fragment"),
    [
        (INT_MAX + 1, "", "out of range"),
        (INT_MIN - 1, "", "out of range"),
        ({"a": [1, 2**70]}, "/a/1", "out of range"),
        (float("nan"), "", "NaN"),
        (float("inf"), "", "float inf"),
        ({"x": {"y": -math.inf}}, "/x/y", "-inf"),
        ([math.nan], "/0", "nan"),
        (b"bytes", "", "bytes"),
        ({"blob": bytearray(b"x")}, "/blob", "bytes"),
        ({1, 2}, "", "use a list"),
        ({"s": frozenset()}, "/s", "use a list"),
        (object(), "", "not JSON-compatible"),
        ({"when": 1j}, "/when", "complex"),
        ({1: "x"}, "/1", "not a string"),
        ({"a": {None: 1}}, "/a/None", "not a string"),
        ({"a": {(1, 2): 1}}, "/a/(1, 2)", "not a string"),
        ("lone \ud800 surrogate", "", "lone surrogate"),
        ({"k": ["ok", "bad \udfff"]}, "/k/1", "lone surrogate"),
        ({"bad \ud800 key": 1}, "/bad \ud800 key", "key"),
    ],
)
def test_freeze_rejects_with_json_pointer(value: Any, path: str, fragment: str) -> None:
    with pytest.raises(InvalidValue) as info:
        freeze(value)
    assert info.value.path == path
    assert fragment in str(info.value)
    assert isinstance(info.value, InvalidArgument)
    assert isinstance(info.value, ValueError)


def test_pointer_names_the_member_in_a_document() -> None:
    doc = {"user": {"name": "ada", "tags": ["a", "b", "c", {1, 2}]}}
    with pytest.raises(InvalidValue) as info:
        freeze(doc)
    assert info.value.path == "/user/tags/3"
    assert "'/user/tags/3'" in str(info.value)


def test_pointer_escapes_tilde_and_slash() -> None:
    with pytest.raises(InvalidValue) as info:
        freeze({"a/b": {"m~n": {"~/": [0, float("nan")]}}})
    assert info.value.path == "/a~1b/m~0n/~0~1/1"


def test_pointer_of_an_empty_key() -> None:
    with pytest.raises(InvalidValue) as info:
        freeze({"": {"": b""}})
    assert info.value.path == "//"


@pytest.mark.parametrize("build", [nested_lists, nested_dicts])
def test_depth_limit_is_inclusive(build: Callable[[int], Any]) -> None:
    assert DEFAULT_LIMITS.max_depth == 64
    ok = freeze(build(64))
    assert json_equal(ok, build(64))
    assert_frozen(ok)
    with pytest.raises(InvalidValue, match="deeper than the limit of 64") as info:
        freeze(build(65))
    # The pointer leads to the container that is one level too deep.
    assert info.value.path.count("/") == 64


def test_depth_counts_mixed_containers_and_ignores_scalars() -> None:
    value: Any = "leaf"
    for level in range(64):
        value = [value] if level % 2 else {"k": value}
    freeze(value)
    with pytest.raises(InvalidValue):
        freeze([value])


def test_depth_follows_the_configured_limit() -> None:
    limits = Limits(max_depth=2)
    freeze({"a": [1]}, limits)
    freeze(1, Limits(max_depth=0))
    with pytest.raises(InvalidValue, match="limit of 2"):
        freeze({"a": [[1]]}, limits)
    with pytest.raises(InvalidValue):
        freeze([], Limits(max_depth=0))


def test_a_cycle_is_rejected_not_looped() -> None:
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(InvalidValue, match="deeper"):
        freeze(cyclic)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidValue, match="deeper"):
        freeze(loop)


def test_a_huge_depth_limit_still_fails_cleanly() -> None:
    with pytest.raises(InvalidValue, match="too deeply"):
        freeze(nested_lists(100_000), Limits(max_depth=10**9))


class Color(enum.IntEnum):
    RED = 1


class Text(str):
    def __str__(self) -> str:
        return "overridden"


class Number(float):
    pass


class Big(int):
    pass


def test_subclasses_become_their_base_type() -> None:
    frozen = freeze(
        {"enum": Color.RED, "text": Text("hi"), "float": Number(1.5), "int": Big(7), "bool": True}
    )
    assert frozen == {"enum": 1, "text": "hi", "float": 1.5, "int": 7, "bool": True}
    assert [type(v) for v in frozen.values()] == [int, str, float, int, bool]
    with pytest.raises(InvalidValue, match="out of range"):
        freeze(Big(2**64))


def test_str_subclass_keys_become_plain_str() -> None:
    frozen = freeze({Text("k"): [1], "plain": 2})
    assert frozen == {"k": [1], "plain": 2}
    assert all(type(k) is str for k in frozen)
    assert_frozen(frozen)


def test_keys_that_collide_once_converted_are_rejected() -> None:
    class Odd(str):
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            return other is self

    with pytest.raises(InvalidValue, match="equal once converted"):
        freeze({Odd("k"): 1, Odd("k"): 2})


def test_dict_list_and_tuple_subclasses_are_accepted() -> None:
    frozen = freeze(OrderedDict([("b", (1, 2)), ("a", [3])]))
    assert frozen == {"b": [1, 2], "a": [3]}
    assert list(frozen) == ["b", "a"]
    assert_frozen(frozen)


def test_freeze_is_a_deep_copy() -> None:
    doc: dict[str, Any] = {"a": {"b": [1, {"c": 2}]}, "t": (1, [2])}
    frozen = freeze(doc)
    doc["a"]["b"][1]["c"] = 99
    doc["a"]["b"].append(3)
    doc["t"][1].append(3)
    doc["new"] = 1
    assert frozen == {"a": {"b": [1, {"c": 2}]}, "t": [1, [2]]}
    assert_frozen(frozen)


def test_freeze_reuses_valid_frozen_values() -> None:
    frozen = freeze({"a": {"b": [1, 2]}, "c": [{"d": None}]})
    assert freeze(frozen) is frozen
    wrapped = freeze({"old": frozen, "new": 1})
    assert wrapped["old"] is frozen


def test_freeze_still_validates_a_hand_built_frozen_dict() -> None:
    with pytest.raises(InvalidValue) as info:
        freeze(FrozenDict({"x": FrozenList([1, math.nan])}))
    assert info.value.path == "/x/1"
    # ... and converts plain containers hidden inside one.
    mixed = freeze(FrozenDict({"x": [1, {"y": 2}]}))
    assert_frozen(mixed)


@PROPERTY
@given(json_values)
def test_freeze_keeps_the_value(value: Any) -> None:
    frozen = freeze(value)
    assert json_equal(frozen, value)
    assert frozen == value
    assert_frozen(frozen)
    assert thaw(frozen) == value
    assert_plain(thaw(frozen))
    assert freeze(frozen) is frozen or not isinstance(frozen, (dict, list))
    assert json.loads(json.dumps(frozen)) == json.loads(json.dumps(value))


# ------------------------------------------------------------------------ thaw


def test_thaw_gives_a_mutable_deep_copy() -> None:
    frozen = freeze({"a": [1, {"b": (2,)}]})
    thawed = thaw(frozen)
    assert thawed == {"a": [1, {"b": [2]}]}
    assert_plain(thawed)
    thawed["a"][1]["b"].append(3)
    assert frozen == {"a": [1, {"b": [2]}]}
    assert thaw(5) == 5
    assert thaw(None) is None


# ------------------------------------------------------------------ json_equal


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1.0, True),
        (0, -0.0, True),
        (True, 1, False),
        (1, True, False),
        (False, 0, False),
        (0.0, False, False),
        (True, True, True),
        (True, False, False),
        (None, None, True),
        (None, 0, False),
        (None, False, False),
        ("", None, False),
        ("1", 1, False),
        ([], {}, False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([1, 2], (1, 2), True),
        ([1], [True], False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": True}, False),
        ({"a": None}, {}, False),
        ({}, {"a": None}, False),
        ({"a": 1}, {"b": 1}, False),
        (FrozenDict({"a": FrozenList([1])}), {"a": [1.0]}, True),
        ({"a": [{"b": False}]}, {"a": [{"b": 0}]}, False),
        (2**64 - 1, float(2**64), False),
    ],
)
def test_json_equal(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


@PROPERTY
@given(json_values, json_values)
def test_json_equal_is_reflexive_and_symmetric(a: Any, b: Any) -> None:
    assert json_equal(a, a)
    assert json_equal(a, freeze(a))
    assert json_equal(thaw(a), a)
    assert json_equal(a, b) is json_equal(b, a)


@PROPERTY
@given(json_values, json_values)
def test_json_equal_agrees_with_json_text(a: Any, b: Any) -> None:
    # Sorted JSON text is a JSON-aware equality for values whose numbers
    # print the same (ints vs floats aside), so where they agree on types it
    # must agree with json_equal.
    def canon(v: Any) -> str:
        return json.dumps(v, sort_keys=True)

    if canon(a) == canon(b):
        assert json_equal(a, b)
