"""Table names and keys."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from model_support import PROPERTY

from amber.config import Limits
from amber.errors import InvalidArgument, InvalidName
from amber.model import check_key, check_table


class Name(str):
    pass


@pytest.mark.parametrize(
    "name", ["a", "accounts", "A-b_c.d", "0", "...", "t" * 128, "user.v2", "-"]
)
def test_valid_table_names(name: str) -> None:
    assert check_table(name) == name
    assert type(check_table(name)) is str


@pytest.mark.parametrize(
    "name",
    ["", "t" * 129, "a b", "a:b", "a/b", "tëst", "a\n", "a\x00", "*", "ta\u0431le", "١٢٣"],
)
def test_invalid_table_names(name: str) -> None:
    with pytest.raises(InvalidName) as info:
        check_table(name)
    message = str(info.value)
    assert repr(name)[:40] in message
    assert "1 to 128 characters of A-Z a-z 0-9 _ . -" in message
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize("name", [None, 5, b"bytes", ["a"]])
def test_table_name_must_be_a_str(name: Any) -> None:
    with pytest.raises(InvalidName, match=f"must be a str, not {type(name).__name__}"):
        check_table(name)


def test_table_name_limit_is_configurable() -> None:
    limits = Limits(max_table_name=3)
    assert check_table("abc", limits) == "abc"
    with pytest.raises(InvalidName, match="1 to 3 characters"):
        check_table("abcd", limits)


def test_table_name_subclass_becomes_plain_str() -> None:
    got = check_table(Name("users"))
    assert got == "users"
    assert type(got) is str
    with pytest.raises(InvalidName):
        check_table(Name("no good"))


@PROPERTY
@given(st.text(max_size=140))
def test_table_rule_matches_the_documented_pattern(name: str) -> None:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
    valid = 1 <= len(name) <= 128 and set(name) <= allowed
    if valid:
        assert check_table(name) == name
    else:
        with pytest.raises(InvalidName):
            check_table(name)


# ------------------------------------------------------------------------ keys


@pytest.mark.parametrize(
    "key",
    [
        "k",
        "42",
        "user:42/profile",
        " spaces and\ttabs ",
        "\x00",
        "ünïcødé",
        "😀",
        "k" * 1024,
        "é" * 512,  # 2 bytes each: exactly 1024
        "😀" * 256,  # 4 bytes each: exactly 1024
        "a" + "€" * 341,  # 1 + 3 * 341 = 1024
    ],
)
def test_valid_keys(key: str) -> None:
    assert check_key(key) is key


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "must not be empty"),
        ("k" * 1025, "1025 bytes"),
        ("é" * 513, "1026 bytes"),
        ("😀" * 257, "1028 bytes"),
        ("aa" + "€" * 341, "1025 bytes"),
        ("lone \ud800", "lone surrogate at index 5"),
        ("\udc00" * 300, "lone surrogate at index 0"),
    ],
)
def test_invalid_keys(key: str, fragment: str) -> None:
    with pytest.raises(InvalidName, match=fragment) as info:
        check_key(key)
    assert isinstance(info.value, InvalidArgument)


@pytest.mark.parametrize("key", [None, 42, b"k", ("a",)])
def test_key_must_be_a_str(key: Any) -> None:
    with pytest.raises(InvalidName, match=f"must be a str, not {type(key).__name__}"):
        check_key(key)


def test_key_limit_is_configurable() -> None:
    limits = Limits(max_key_bytes=4)
    assert check_key("abcd", limits) == "abcd"
    assert check_key("é", limits) == "é"
    assert check_key("éé", limits) == "éé"
    for bad in ("abcde", "ééa", "😀a"):
        with pytest.raises(InvalidName, match="1 to 4 bytes"):
            check_key(bad, limits)


def test_key_subclass_becomes_plain_str() -> None:
    got = check_key(Name("k1"))
    assert got == "k1"
    assert type(got) is str


@PROPERTY
@given(st.text(max_size=400) | st.text(alphabet="😀é€a\ud800", max_size=400))
def test_key_rule_is_utf8_length(key: str) -> None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        size = None
    limits = Limits(max_key_bytes=600)
    if size is not None and 1 <= size <= 600:
        assert check_key(key, limits) == key
    else:
        with pytest.raises(InvalidName):
            check_key(key, limits)
