"""Scan field filters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from model_support import PROPERTY, json_values

from amber.errors import InvalidArgument, InvalidQuery
from amber.model import compile_where, freeze, json_equal

DOC = freeze(
    {
        "user": {"name": "ada", "age": 36, "admin": True, "nick": None},
        "tags": ["x", "y", {"k": 1}],
        "email": "ada@example.com",
        "score": 9.5,
        "zero": 0,
        "flag": False,
        "0": "zero-key",
        "matrix": [[1, 2], [3, 4]],
    }
)


def matches(*conditions: Any, doc: Any = DOC) -> bool:
    predicate = compile_where(list(conditions))
    assert predicate is not None
    return predicate(doc)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        # = and != use JSON equality
        (("user.name", "=", "ada"), True),
        (("user.age", "=", 36.0), True),
        (("user.admin", "=", 1), False),
        (("user.admin", "=", True), True),
        (("zero", "=", False), False),
        (("flag", "=", 0), False),
        (("tags", "=", ["x", "y", {"k": 1.0}]), True),
        (("user.nick", "=", None), True),
        (("user.name", "!=", "bob"), True),
        (("user.name", "!=", "ada"), False),
        (("user.admin", "!=", 1), True),
        # a missing field: everything false except != and exists False
        (("missing", "=", None), False),
        (("missing", "!=", None), True),
        (("missing", "!=", 1), True),
        (("missing", "<", 1), False),
        (("missing", ">=", ""), False),
        (("missing", "in", [None]), False),
        (("missing", "contains", "x"), False),
        (("missing", "prefix", ""), False),
        (("missing", "exists", True), False),
        (("missing", "exists", False), True),
        (("user.name.first", "=", "ada"), False),
        (("user.name.first", "!=", "ada"), True),
        # ordering: numbers with numbers, strings with strings, else false
        (("user.age", ">", 30), True),
        (("user.age", ">", 36), False),
        (("user.age", ">=", 36), True),
        (("user.age", "<", 36.5), True),
        (("user.age", "<=", 35.9), False),
        (("score", ">", 9), True),
        (("user.name", "<", "bob"), True),
        (("user.name", ">=", "ada"), True),
        (("user.name", ">", 1), False),
        (("user.age", "<", "z"), False),
        (("user.admin", ">", 0), False),
        (("user.admin", ">=", 1), False),
        (("flag", "<", 1), False),
        (("user.nick", "<", 1), False),
        (("tags", ">", 0), False),
        # in
        (("user.name", "in", ["bob", "ada"]), True),
        (("user.age", "in", [36.0]), True),
        (("user.admin", "in", [1]), False),
        (("user.name", "in", []), False),
        (("user.nick", "in", [None]), True),
        # contains
        (("tags", "contains", "x"), True),
        (("tags", "contains", {"k": 1}), True),
        (("tags", "contains", "z"), False),
        (("email", "contains", "@example"), True),
        (("email", "contains", "@nope"), False),
        (("email", "contains", ""), True),
        (("email", "contains", 1), False),
        (("user", "contains", "name"), False),
        (("user.age", "contains", 3), False),
        (("matrix", "contains", [3, 4]), True),
        # prefix
        (("email", "prefix", "ada@"), True),
        (("email", "prefix", ""), True),
        (("email", "prefix", "bob"), False),
        (("tags", "prefix", "x"), False),
        (("user.age", "prefix", "3"), False),
        # exists: null is present
        (("user.nick", "exists", True), True),
        (("user.nick", "exists", False), False),
        (("user.name", "exists"), True),
        (("missing", "exists"), False),
        # paths: list indexes, keys that look like numbers
        (("tags.0", "=", "x"), True),
        (("tags.2.k", "=", 1), True),
        (("tags.3", "exists"), False),
        (("tags.01", "exists"), False),
        (("tags.-1", "exists"), False),
        (("matrix.1.0", "=", 3), True),
        (("0", "=", "zero-key"), True),
        (("email.0", "exists"), False),
    ],
)
def test_condition_semantics(condition: tuple[Any, ...], expected: bool) -> None:
    assert matches(condition) is expected
    assert matches(list(condition)) is expected  # lists work like tuples


def test_conditions_are_anded() -> None:
    assert matches(("user.age", ">", 30), ("tags", "contains", "x"), ("email", "exists"))
    assert not matches(("user.age", ">", 30), ("tags", "contains", "z"), ("email", "exists"))
    assert not matches(("user.age", ">", 40), ("tags", "contains", "x"))


def test_a_non_object_document_has_no_fields() -> None:
    for doc in (None, 5, "text", [1, 2], [{"a": 1}]):
        assert not matches(("a", "exists"), doc=doc)
        assert matches(("a", "!=", 1), doc=doc)
    assert matches(("0.a", "=", 1), doc=[{"a": 1}])


def test_numbers_compare_exactly() -> None:
    assert matches(("n", ">", 2**63), doc={"n": 2**64 - 1})
    assert not matches(("n", ">", float(2**64)), doc={"n": 2**64 - 1})


@pytest.mark.parametrize("spec", [None, [], ()])
def test_no_conditions_means_no_filter(spec: Any) -> None:
    assert compile_where(spec) is None


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ([("a", "~", 1)], "unknown operator '~'"),
        ([("a", "==", 1)], "unknown operator '=='"),
        ([("a", 3, 1)], "unknown operator 3"),
        ([("a",)], "3 items"),
        ([("a", "=", 1, 2)], "3 items"),
        ([()], "3 items"),
        ([("a", "=")], "only 'exists' may omit its operand"),
        ([("a", "in", "abc")], "'in' needs a list operand"),
        ([("a", "in", 1)], "'in' needs a list operand"),
        ([("a", "prefix", 1)], "'prefix' needs a string operand"),
        ([("a", "prefix", None)], "'prefix' needs a string operand"),
        ([("a", "exists", 1)], "'exists' needs True or False"),
        ([("a", "exists", "yes")], "'exists' needs True or False"),
        ([("a", "<", None)], "compares numbers or strings"),
        ([("a", ">", True)], "compares numbers or strings"),
        ([("a", ">=", [1])], "compares numbers or strings"),
        ([(1, "=", 1)], "path must be a non-empty dotted string"),
        ([(None, "exists")], "path must be a non-empty dotted string"),
        ([("", "=", 1)], "path must be a non-empty dotted string"),
        ([("a..b", "=", 1)], "empty component"),
        ([(".a", "=", 1)], "empty component"),
        ([("a.", "=", 1)], "empty component"),
        ([("a", "=", {1, 2})], "not a JSON value"),
        ([("a", "=", float("nan"))], "not a JSON value"),
        (["a = 1"], "a condition is a list or tuple"),
        ([5], "a condition is a list or tuple"),
        ("a", "a filter must be a list of conditions"),
        ({"a": 1}, "a filter must be a list of conditions"),
        (("a", "=", 1), "a condition is a list or tuple"),
    ],
)
def test_malformed_specs_are_rejected_when_compiled(spec: Any, fragment: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        compile_where(spec)
    assert fragment in str(info.value)
    assert isinstance(info.value, InvalidArgument)


def test_the_error_names_the_condition() -> None:
    with pytest.raises(InvalidQuery) as info:
        compile_where([("ok", "=", 1), ("user.age", "between", [1, 2])])
    assert "condition #1 ('user.age', 'between', [1, 2])" in str(info.value)


def test_operands_are_copied_at_compile_time() -> None:
    choices = ["a"]
    predicate = compile_where([("v", "in", choices)])
    assert predicate is not None
    choices.append("b")
    assert not predicate({"v": "b"})


@PROPERTY
@given(json_values, json_values)
def test_equality_ops_agree_with_json_equal(field: Any, operand: Any) -> None:
    doc = {"f": field}
    assert matches(("f", "=", operand), doc=doc) is json_equal(field, operand)
    assert matches(("f", "!=", operand), doc=doc) is not json_equal(field, operand)
    assert matches(("f", "in", [operand]), doc=doc) is json_equal(field, operand)
    assert matches(("f", "contains", operand), doc={"f": [field]}) is json_equal(field, operand)
