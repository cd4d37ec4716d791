"""RFC 7396 JSON Merge Patch: ``merge_patch`` and its inverse ``diff``."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from model_support import (
    PROPERTY,
    assert_frozen,
    expressible_values,
    json_objects,
    json_values,
    strip_null_members,
)

from amber.errors import InvalidValue
from amber.model import FrozenDict, diff, freeze, json_equal, merge_patch

# RFC 7396, Appendix A "Example Test Cases", verbatim as JSON text.
RFC7396_APPENDIX_A = [
    ('{"a":"b"}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"b"}', '{"b":"c"}', '{"a":"b","b":"c"}'),
    ('{"a":"b"}', '{"a":null}', "{}"),
    ('{"a":"b","b":"c"}', '{"a":null}', '{"b":"c"}'),
    ('{"a":["b"]}', '{"a":"c"}', '{"a":"c"}'),
    ('{"a":"c"}', '{"a":["b"]}', '{"a":["b"]}'),
    ('{"a":{"b":"c"}}', '{"a":{"b":"d","c":null}}', '{"a":{"b":"d"}}'),
    ('{"a":[{"b":"c"}]}', '{"a":[1]}', '{"a":[1]}'),
    ('["a","b"]', '["c","d"]', '["c","d"]'),
    ('{"a":"b"}', '["c"]', '["c"]'),
    ('{"a":"foo"}', "null", "null"),
    ('{"a":"foo"}', '"bar"', '"bar"'),
    ('{"e":null}', '{"a":1}', '{"e":null,"a":1}'),
    ("[1,2]", '{"a":"b","c":null}', '{"a":"b"}'),
    ("{}", '{"a":{"bb":{"ccc":null}}}', '{"a":{"bb":{}}}'),
]

# RFC 7396, section 3.
RFC7396_SECTION_3 = (
    """{"title": "Goodbye!",
        "author": {"givenName": "John", "familyName": "Doe"},
        "tags": ["example", "sample"],
        "content": "This will be unchanged"}""",
    """{"title": "Hello!",
        "phoneNumber": "+01-123-456-7890",
        "author": {"familyName": null},
        "tags": ["example"]}""",
    """{"title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "content": "This will be unchanged",
        "phoneNumber": "+01-123-456-7890"}""",
)

CASES = [*RFC7396_APPENDIX_A, RFC7396_SECTION_3]


@pytest.mark.parametrize(("target", "patch", "result"), CASES)
@pytest.mark.parametrize("frozen", [True, False], ids=["frozen", "plain"])
def test_rfc7396_examples(target: str, patch: str, result: str, frozen: bool) -> None:
    t, p, expected = json.loads(target), json.loads(patch), json.loads(result)
    if frozen:
        t, p = freeze(t), freeze(p)
    before_t, before_p = copy.deepcopy(t), copy.deepcopy(p)
    got = merge_patch(t, p)
    assert json_equal(got, expected)
    assert_frozen(got)
    assert json_equal(t, before_t)
    assert json_equal(p, before_p)


@pytest.mark.parametrize(("target", "patch", "result"), CASES)
def test_diff_reproduces_the_rfc_results(target: str, patch: str, result: str) -> None:
    old, new = freeze(json.loads(target)), freeze(json.loads(result))
    assert json_equal(merge_patch(old, diff(old, new)), new)


def test_absent_target_is_none() -> None:
    assert merge_patch(None, {"a": 1, "b": None}) == {"a": 1}
    assert merge_patch(None, [1, None]) == [1, None]


def test_true_is_not_one() -> None:
    got = merge_patch({"a": 1}, {"a": True})
    assert type(got["a"]) is bool
    assert diff({"a": 1}, {"a": True}) == {"a": True}
    assert type(diff({"a": 1}, {"a": True})["a"]) is bool
    assert diff({"a": 1}, {"a": 1.0}) == {}


def test_merge_shares_untouched_subtrees() -> None:
    target = freeze({"big": {"x": [1, 2, 3]}, "other": {"y": 1}, "n": 1})
    got = merge_patch(target, {"n": 2, "other": {"z": 2}})
    assert got == {"big": {"x": [1, 2, 3]}, "other": {"y": 1, "z": 2}, "n": 2}
    assert got["big"] is target["big"]
    assert target == {"big": {"x": [1, 2, 3]}, "other": {"y": 1}, "n": 1}


def test_a_patch_that_changes_nothing_returns_the_target_itself() -> None:
    target = freeze({"a": {"b": 1}, "c": [1]})
    assert merge_patch(target, {}) is target
    assert merge_patch(target, {"missing": None}) is target
    assert merge_patch(target, {"a": {}}) is target
    assert merge_patch(target, {"c": target["c"]}) is target


def test_a_plain_target_is_frozen_through() -> None:
    target: dict[str, Any] = {"keep": {"deep": [1]}, "drop": 1}
    got = merge_patch(target, {"drop": None})
    assert got == {"keep": {"deep": [1]}}
    assert_frozen(got)
    target["keep"]["deep"].append(2)
    assert got == {"keep": {"deep": [1]}}


def test_plain_inputs_are_validated() -> None:
    with pytest.raises(InvalidValue) as info:
        merge_patch({"a": 1}, {"b": {"c": float("nan")}})
    assert info.value.path == "/b/c"
    with pytest.raises(InvalidValue):
        merge_patch({"a": 1}, [b"x"])


@PROPERTY
@given(json_values, json_values)
def test_merge_patch_is_pure_and_frozen(target: Any, patch: Any) -> None:
    before_t, before_p = copy.deepcopy(target), copy.deepcopy(patch)
    got = merge_patch(target, patch)
    assert_frozen(got)
    assert target == before_t
    assert patch == before_p
    frozen_t, frozen_p = freeze(target), freeze(patch)
    assert json_equal(merge_patch(frozen_t, frozen_p), got)
    assert frozen_t == before_t


@PROPERTY
@given(json_values, json_values)
def test_merge_patch_is_idempotent(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert json_equal(merge_patch(once, patch), once)


# ------------------------------------------------------------------------ diff


def test_diff_of_equal_objects_is_empty() -> None:
    doc = {"a": [1, {"b": None}], "c": {"d": True}}
    assert diff(doc, copy.deepcopy(doc)) == {}
    assert type(diff(doc, doc)) is FrozenDict
    assert diff({}, {}) == {}


def test_diff_of_objects() -> None:
    old = {"keep": 1, "drop": 2, "change": "x", "nested": {"a": 1, "b": 2}, "swap": {"o": 1}}
    new = {"keep": 1, "change": "y", "nested": {"a": 1, "c": 3}, "swap": [1], "add": {"n": [1]}}
    patch = diff(old, new)
    assert patch == {
        "drop": None,
        "change": "y",
        "nested": {"b": None, "c": 3},
        "swap": [1],
        "add": {"n": [1]},
    }
    assert_frozen(patch)
    assert merge_patch(old, patch) == new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (None, {"a": 1}),
        ({"a": 1}, None),
        ([1], [2]),
        ("x", "x"),
        (5, {"a": None}),
        ({"a": 1}, [1]),
        ([{"a": 1}], {"a": 1}),
    ],
)
def test_diff_with_a_non_object_side_is_the_new_value(old: Any, new: Any) -> None:
    patch = diff(old, new)
    assert json_equal(patch, new)
    assert_frozen(patch)


def test_diff_turns_new_null_members_into_removals() -> None:
    # RFC 7396 cannot set a member to null: the patch removes it instead.
    old = {"a": 1, "b": {"c": 1, "d": [None]}}
    new = {"a": None, "b": {"c": None, "d": [None]}, "e": {"f": None, "g": 1}}
    patch = diff(old, new)
    assert patch == {"a": None, "b": {"c": None}, "e": {"f": None, "g": 1}}
    assert merge_patch(old, patch) == {"b": {"d": [None]}, "e": {"g": 1}}


def test_diff_leaves_unchanged_null_members_alone() -> None:
    old = {"same": {"n": None}, "x": 1}
    new = {"same": {"n": None}, "x": 2}
    assert diff(old, new) == {"x": 2}
    assert merge_patch(old, diff(old, new)) == new


@PROPERTY
@given(json_values, expressible_values)
def test_merge_of_diff_reproduces_expressible_values(old: Any, new: Any) -> None:
    patch = diff(old, new)
    assert_frozen(patch)
    assert json_equal(merge_patch(old, patch), new)
    assert json_equal(merge_patch(freeze(old), patch), new)


@PROPERTY
@given(json_values, json_values)
def test_merge_of_diff_differs_from_new_only_by_null_members(old: Any, new: Any) -> None:
    got = merge_patch(old, diff(old, new))
    assert json_equal(strip_null_members(got), strip_null_members(new))


@PROPERTY
@given(json_objects)
def test_diff_of_a_value_with_itself_is_empty(doc: dict[str, Any]) -> None:
    assert diff(doc, freeze(doc)) == {}
    assert diff(freeze(doc), doc) == {}


@PROPERTY
@given(json_objects, json_objects)
def test_diff_never_mutates(old: dict[str, Any], new: dict[str, Any]) -> None:
    before_old, before_new = copy.deepcopy(old), copy.deepcopy(new)
    diff(old, new)
    assert old == before_old
    assert new == before_new


def test_a_hand_built_frozen_patch_with_plain_members_still_merges() -> None:
    target = freeze({"a": {"b": 1, "c": 2}})
    patch = FrozenDict({"a": {"c": None, "d": [1]}})
    got = merge_patch(target, patch)
    assert got == {"a": {"b": 1, "d": [1]}}
    assert_frozen(got)
