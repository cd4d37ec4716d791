"""JSON.ARR*, OBJ*, STR*, TOGGLE, CLEAR, MSET, RESP, DEBUG against a real ``amber serve``.

Replies are read raw (RESP2, no redis-py callbacks) to check RedisJSON v2's
shapes exactly: a JSONPath (``$…``) answers an array per match (nil where
the type is wrong, empty when nothing matches), a legacy path the value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

DOC = {"a": [1, 2, 3], "s": "foo", "b": True, "n": 5, "f": 1.5, "o": {"x": 1, "y": []}, "z": None}


@pytest.fixture
def r(amber_server: Any) -> Iterator[Any]:
    """A RESP2 client that returns replies as they come (bytes, lists, ints)."""
    client = amber_server.redis(protocol=2)
    client.response_callbacks.clear()
    yield client
    client.close()


def call(r: Any, *args: Any) -> Any:
    return r.execute_command(*args)


def doc(r: Any, key: str) -> Any:
    raw = call(r, "JSON.GET", key)
    return None if raw is None else json.loads(raw)


@pytest.fixture
def d(r: Any) -> str:
    call(r, "JSON.SET", "ja:1", "$", json.dumps(DOC))
    return "ja:1"


def error(r: Any, *args: Any) -> str:
    with pytest.raises(redis.ResponseError) as info:
        call(r, *args)
    return str(info.value)


def test_arrappend_and_arrinsert(r: Any, d: str) -> None:
    assert call(r, "JSON.ARRAPPEND", d, "$.a", "4", '"five"') == [5]
    assert call(r, "JSON.ARRAPPEND", d, ".a", '{"k":[1]}') == 6
    assert call(r, "JSON.ARRAPPEND", d, "$.s", "1") == [None]  # wrong type: nil
    assert call(r, "JSON.ARRAPPEND", d, "$.nope", "1") == []  # no match: empty
    assert error(r, "JSON.ARRAPPEND", d, ".s", "1") == "Path '.s' does not exist or not an array"
    assert call(r, "JSON.ARRINSERT", d, "$.a", "0", "0") == [7]
    assert call(r, "JSON.ARRINSERT", d, ".a", "-1", "99", "98") == 9
    assert error(r, "JSON.ARRINSERT", d, ".a", "10", "1") == "index out of bounds"
    assert error(r, "JSON.ARRINSERT", d, ".a", "x", "1").startswith("value is not an integer")
    assert doc(r, d)["a"] == [0, 1, 2, 3, 4, "five", 99, 98, {"k": [1]}]
    assert error(r, "JSON.ARRAPPEND", "ja:none", "$.a", "1") == (
        "could not perform this operation on a key that doesn't exist"
    )
    assert error(r, "JSON.ARRAPPEND", d, "$.a", "nojson").startswith("invalid JSON")
    assert call(r, "JSON.ARRAPPEND", d, "$", "1") == [None]  # the root is an object


def test_arrpop_arrtrim_arrlen_arrindex(r: Any, d: str) -> None:
    assert call(r, "JSON.ARRPOP", d, "$.a") == [b"3"]
    assert call(r, "JSON.ARRPOP", d, ".a", "0") == b"1"
    assert call(r, "JSON.ARRPOP", d, "$.o.y") == [None]  # empty array: nil, no change
    assert call(r, "JSON.ARRPOP", d, "$.s") == [None]
    assert call(r, "JSON.ARRPOP", d, ".a", "100") == b"2"  # out of range: clamped
    assert call(r, "JSON.ARRPOP", d, ".a") is None
    call(r, "JSON.SET", "ja:arr", "$", '[{"q":1},2,"x",true,null,[1]]')
    assert call(r, "JSON.ARRPOP", "ja:arr") == b"[1]"  # default path: the root, legacy
    assert call(r, "JSON.ARRLEN", "ja:arr") == 5
    assert call(r, "JSON.ARRLEN", "ja:arr", "$") == [5]
    assert call(r, "JSON.ARRLEN", d, "$.s") == [None]
    assert call(r, "JSON.ARRLEN", "ja:none") is None
    assert call(r, "JSON.ARRLEN", "ja:none", ".") is None
    assert error(r, "JSON.ARRLEN", "ja:none", "$").startswith("could not perform")
    assert call(r, "JSON.ARRINDEX", "ja:arr", "$", '{"q":1}') == [0]
    assert call(r, "JSON.ARRINDEX", "ja:arr", ".", "true") == 3
    assert call(r, "JSON.ARRINDEX", "ja:arr", ".", "1") == -1  # true is not 1
    assert call(r, "JSON.ARRINDEX", "ja:arr", ".", "null", "-2") == 4
    assert call(r, "JSON.ARRINDEX", "ja:arr", ".", "2", "2") == -1
    assert call(r, "JSON.ARRINDEX", "ja:arr", ".", '"x"', "0", "-2") == 2
    assert call(r, "JSON.ARRINDEX", "ja:arr", ".", '"x"', "0", "2") == -1  # stop excluded
    assert call(r, "JSON.ARRINDEX", d, "$.s", "1") == [None]
    assert error(r, "JSON.ARRINDEX", d, ".s", "1") == (
        "WRONGTYPE wrong type of path value - expected array but found string"
    )
    assert call(r, "JSON.ARRTRIM", "ja:arr", "$", "1", "-2") == [3]
    assert doc(r, "ja:arr") == [2, "x", True]
    assert call(r, "JSON.ARRTRIM", "ja:arr", ".", "5", "10") == 0
    assert doc(r, "ja:arr") == []


def test_objects_strings_toggle_clear(r: Any, d: str) -> None:
    assert call(r, "JSON.OBJKEYS", d, "$.o") == [[b"x", b"y"]]
    assert call(r, "JSON.OBJKEYS", d) == [b"a", b"s", b"b", b"n", b"f", b"o", b"z"]
    assert call(r, "JSON.OBJKEYS", d, "$.a") == [None]
    assert call(r, "JSON.OBJKEYS", d, ".nope") is None
    assert error(r, "JSON.OBJKEYS", d, ".a") == "Path '.a' does not exist or not an object"
    assert call(r, "JSON.OBJLEN", d) == 7
    assert call(r, "JSON.OBJLEN", d, "$.o") == [2]
    assert error(r, "JSON.OBJLEN", d, ".s").startswith("WRONGTYPE wrong type of path value")
    assert call(r, "JSON.STRLEN", d, ".s") == 3
    assert call(r, "JSON.STRLEN", d, "$.n") == [None]
    assert error(r, "JSON.STRLEN", d, ".nope") == "Path '.nope' does not exist"
    assert call(r, "JSON.STRAPPEND", d, ".s", '"bär"') == 7  # bytes, as RedisJSON counts
    assert call(r, "JSON.STRAPPEND", d, "$.s", '"!"') == [8]
    assert call(r, "JSON.STRAPPEND", d, "$.n", '"!"') == [None]
    assert error(r, "JSON.STRAPPEND", d, ".s", "1").startswith("WRONGTYPE wrong type of value")
    call(r, "JSON.SET", "ja:str", "$", '"x"')
    assert call(r, "JSON.STRAPPEND", "ja:str", '"yz"') == 3  # path optional: the root
    assert call(r, "JSON.TOGGLE", d, ".b") == b"false"
    assert call(r, "JSON.TOGGLE", d, "$.b") == [1]
    assert call(r, "JSON.TOGGLE", d, "$.n") == [None]
    assert error(r, "JSON.TOGGLE", d, ".n") == "Path '.n' does not exist or not a bool"
    assert call(r, "JSON.CLEAR", d, "$.o") == 1
    assert call(r, "JSON.CLEAR", d, ".n") == 1
    assert call(r, "JSON.CLEAR", d, "$.s") == 0  # strings stay
    assert call(r, "JSON.CLEAR", d, "$.o") == 0  # already empty
    assert doc(r, d) == {**DOC, "a": [1, 2, 3], "s": "foobär!", "n": 0, "o": {}}
    assert call(r, "JSON.CLEAR", d) == 1
    assert doc(r, d) == {}
    assert error(r, "JSON.CLEAR", "ja:none").startswith("could not perform")


def test_resp_and_debug(r: Any, d: str) -> None:
    assert call(r, "JSON.RESP", d, "$.a") == [[b"[", 1, 2, 3]]
    assert call(r, "JSON.RESP", d, ".o") == [b"{", b"x", 1, b"y", [b"["]]
    assert call(r, "JSON.RESP", d, ".b") == b"true"
    assert call(r, "JSON.RESP", d, ".f") == b"1.5"
    assert call(r, "JSON.RESP", d, ".z") is None
    assert call(r, "JSON.RESP", "ja:none") is None
    assert error(r, "JSON.RESP", d, ".nope") == "Path '.nope' does not exist"
    whole = call(r, "JSON.DEBUG", "MEMORY", d)
    part = call(r, "JSON.DEBUG", "MEMORY", d, "$.a")
    assert isinstance(whole, int) and part[0] < whole
    assert call(r, "JSON.DEBUG", "MEMORY", "ja:none") == 0
    assert call(r, "JSON.DEBUG", "MEMORY", "ja:none", "$") == []
    assert call(r, "JSON.DEBUG", "HELP")[0].startswith(b"MEMORY")
    assert error(r, "JSON.DEBUG", "NOPE").startswith("unknown subcommand")


def test_mset_is_all_or_nothing(r: Any) -> None:
    call(r, "DEL", "jm:1", "jm:2")
    assert call(r, "JSON.MSET", "jm:1", "$", '{"a":1}', "jm:2", "$", "[1]", "jm:1", "$.b", "2")
    assert (doc(r, "jm:1"), doc(r, "jm:2")) == ({"a": 1, "b": 2}, [1])
    before = call(r, "AMBER.REV")
    assert "nothing was set" in error(r, "JSON.MSET", "jm:1", "$.c", "3", "jm:1", "$.x.y", "1")
    assert error(r, "JSON.MSET", "jm:1", "$.c", "3", "jm:2", "$", "{bad").startswith("invalid")
    assert "root" in error(r, "JSON.MSET", "jm:1", "$.c", "3", "jm:new", "$.a", "1")
    assert "wrong number" in error(r, "JSON.MSET", "jm:1", "$.c", "3", "jm:2")
    assert doc(r, "jm:1") == {"a": 1, "b": 2} and call(r, "AMBER.REV") == before


def test_writes_keep_the_ttl_and_work_in_multi(r: Any, d: str) -> None:
    call(r, "EXPIRE", d, "100")
    call(r, "JSON.ARRAPPEND", d, "$.a", "4")
    call(r, "JSON.TOGGLE", d, "$.b")
    call(r, "JSON.STRAPPEND", d, "$.s", '"x"')
    call(r, "JSON.CLEAR", d, "$.o")
    call(r, "JSON.ARRPOP", d, "$.a")
    call(r, "JSON.MSET", d, "$.n", "6")
    assert 95 <= call(r, "TTL", d) <= 100
    pipe = r.pipeline(transaction=True)
    pipe.execute_command("JSON.ARRAPPEND", d, "$.a", "7")
    pipe.execute_command("JSON.ARRLEN", d, "$.a")
    pipe.execute_command("JSON.ARRINSERT", d, ".s", "0", "1")  # fails, the rest applies
    pipe.execute_command("JSON.ARRPOP", d, ".a", "0")
    pipe.execute_command("JSON.MSET", d, "$.n", "7", "ja:2", "$", "{}")
    result = pipe.execute(raise_on_error=False)
    assert result[:2] == [[4], [4]]
    assert isinstance(result[2], redis.ResponseError)
    assert result[3:] == [b"1", b"OK"]
    assert doc(r, d)["a"] == [2, 3, 7] and doc(r, d)["n"] == 7 and doc(r, "ja:2") == {}


def test_one_arrappend_is_one_watch_event(amber_server: Any, r: Any, d: str) -> None:
    start = call(r, "AMBER.REV") + 1
    call(r, "JSON.ARRAPPEND", d, "$.a", "4")
    watcher = amber_server.redis(decode_responses=True)
    pubsub = watcher.pubsub()
    pubsub.execute_command("AMBER.WATCH", d, "FROM", str(start))
    assert pubsub.parse_response(block=True, timeout=10)[0] == "amber.watch"
    event = pubsub.parse_response(block=True, timeout=10)
    assert (event[2], event[4]) == (start, "put")
    assert json.loads(event[5])["a"] == [1, 2, 3, 4]
    assert json.loads(event[6]) == {"a": [1, 2, 3, 4]}  # merge patches replace arrays
    pubsub.close()
    watcher.close()
