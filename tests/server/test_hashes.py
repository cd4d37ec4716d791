"""Hashes stored as JSON objects, and GETEX, against a real ``amber serve``.

The Redis-native behaviour (replies, errors, TTLs) is checked side by side
with redis-server 7: the same commands against both, the same replies.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server_support import replies


@pytest.fixture(scope="module")
def native_redis(redis_server: redis.Redis) -> redis.Redis:
    """The shared redis-server, answering ``str`` as the Amber client here does."""
    port = redis_server.connection_pool.connection_kwargs["port"]
    return redis.Redis(port=port, socket_timeout=10, decode_responses=True)


@pytest.fixture
def r(amber_server: Any) -> Iterator[Any]:
    client = amber_server.redis(decode_responses=True)
    yield client
    client.close()


def test_a_hash_is_a_json_object(r: Any) -> None:
    r.delete("users:1")
    assert r.hset("users:1", mapping={"name": "ada"}) == 1
    assert r.json().get("users:1") == {"name": "ada"}
    # JSON.* and H* see one document: a field set by path reads through HGET.
    r.execute_command("JSON.SET", "users:1", "$.age", "36")
    r.execute_command("JSON.SET", "users:1", "$.tags", '["a","b"]')
    assert r.hget("users:1", "age") == "36"
    assert r.hget("users:1", "tags") == '["a","b"]'  # non-strings read as their JSON text
    assert r.hstrlen("users:1", "tags") == len('["a","b"]')
    assert r.hgetall("users:1") == {"name": "ada", "age": "36", "tags": '["a","b"]'}
    assert r.hkeys("users:1") == ["name", "age", "tags"]
    assert r.hlen("users:1") == 3
    # HINCRBY keeps the kind: the JSON number stays a number, a string stays a string.
    assert r.hincrby("users:1", "age", 1) == 37
    assert r.hset("users:1", "visits", "9") == 1
    assert r.hincrby("users:1", "visits", 1) == 10
    assert r.json().get("users:1", "$.age", "$.visits") == {
        "$.age": [37],
        "$.visits": ["10"],
    }
    with pytest.raises(redis.ResponseError, match="hash value is not an integer"):
        r.hincrby("users:1", "tags", 1)
    assert r.type("users:1") == "ReJSON-RL"  # one document type; see README
    # An empty object is an empty hash that exists.
    r.execute_command("JSON.SET", "users:2", "$", "{}")
    assert (r.hlen("users:2"), r.hgetall("users:2"), r.exists("users:2")) == (0, {}, 1)


def test_wrongtype_for_documents_that_are_not_objects(r: Any) -> None:
    r.set("h:str", "text")
    r.execute_command("JSON.SET", "h:arr", "$", "[1,2]")
    r.execute_command("JSON.SET", "h:num", "$", "5")
    for key in ("h:str", "h:arr", "h:num"):
        for call in (
            lambda k: r.hget(k, "f"),
            lambda k: r.hset(k, "f", "v"),
            lambda k: r.hdel(k, "f"),
            r.hgetall,
            lambda k: r.hincrby(k, "f", 1),
            r.hlen,
            lambda k: r.hscan(k, 0),
        ):
            with pytest.raises(redis.ResponseError, match=r"^WRONGTYPE"):
                call(key)
    assert r.get("h:str") == "text"
    assert r.json().get("h:arr") == [1, 2]


def test_hdel_of_the_last_field_deletes_the_key_and_ttls_stay_as_in_redis(r: Any) -> None:
    r.delete("h:ttl")
    r.hset("h:ttl", mapping={"a": "1", "b": "2"})
    assert r.expire("h:ttl", 100)
    r.hset("h:ttl", "c", "3")
    r.hincrby("h:ttl", "a", 5)
    r.hincrbyfloat("h:ttl", "b", 0.5)
    r.hsetnx("h:ttl", "d", "4")
    assert r.hdel("h:ttl", "c", "nope") == 1
    assert 95 <= r.ttl("h:ttl") <= 100  # every hash write kept the expiry
    assert r.hdel("h:ttl", "a", "b", "d") == 3
    assert r.exists("h:ttl") == 0
    r.hset("h:ttl", "a", "1")
    assert r.ttl("h:ttl") == -1  # a new key, no expiry
    assert r.hdel("h:ttl", "zz") == 0 and r.hdel("h:absent", "zz") == 0


def test_bad_input_changes_nothing(r: Any) -> None:
    r.delete("h:bad")
    r.hset("h:bad", "n", "1")
    rev = r.execute_command("AMBER.REV", "h:bad")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("HSET", "h:bad", "a", "1", "b")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.hincrby("h:bad", "n", "x")
    with pytest.raises(redis.ResponseError, match="overflow"):
        r.hincrby("h:bad", "n", 2**63 - 1)
    with pytest.raises(redis.ResponseError, match="UTF-8"):
        r.execute_command("HSET", "h:bad", b"\xff", "v")
    assert r.hgetall("h:bad") == {"n": "1"}
    assert r.execute_command("AMBER.REV", "h:bad") == rev


def test_hash_commands_in_multi(r: Any) -> None:
    r.delete("h:m", "h:s")
    r.set("h:s", "string")
    pipe = r.pipeline(transaction=True)
    pipe.hset("h:m", mapping={"a": "1", "b": "2"})
    pipe.hincrby("h:m", "a", 10)
    pipe.hget("h:m", "a")
    pipe.hset("h:s", "f", "v")  # WRONGTYPE: this one fails, the rest applies
    pipe.hdel("h:m", "b")
    pipe.hgetall("h:m")
    result = pipe.execute(raise_on_error=False)
    assert result[:3] == [2, 11, "11"]
    assert isinstance(result[3], redis.ResponseError) and "WRONGTYPE" in str(result[3])
    assert result[4:] == [1, {"a": "11"}]
    assert r.get("h:s") == "string"
    # WATCH: a change by another client aborts the block.
    with r.pipeline() as pipe:
        pipe.watch("h:m")
        r.hset("h:m", "a", "other")
        pipe.multi()
        pipe.hset("h:m", "a", "mine")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.hget("h:m", "a") == "other"


def test_getex_in_multi_and_on_documents(r: Any) -> None:
    r.delete("gx:1")
    r.json().set("gx:1", "$", {"a": 1})
    pipe = r.pipeline(transaction=True)
    pipe.getex("gx:1", ex=100)
    pipe.ttl("gx:1")
    pipe.getex("gx:1", persist=True)
    pipe.ttl("gx:1")
    assert pipe.execute() == ['{"a":1}', 100, '{"a":1}', -1]
    assert r.json().get("gx:1") == {"a": 1}  # still the document


def test_concurrent_hincrby_loses_no_increment(amber_server: Any) -> None:
    import threading

    r = amber_server.redis()
    r.delete("h:count")

    def work() -> None:
        client = amber_server.redis()
        for _ in range(50):
            client.hincrby("h:count", "n", 1)
        client.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert r.hget("h:count", "n") == b"200"
    r.close()


def test_one_hset_is_one_watch_event_with_its_diff(amber_server: Any, r: Any) -> None:
    r.delete("wh:1")
    start = r.execute_command("AMBER.REV") + 1
    r.hset("wh:1", mapping={"name": "ada"})
    r.hset("wh:1", "age", "36")
    r.hdel("wh:1", "name")
    watcher = amber_server.redis(decode_responses=True)
    pubsub = watcher.pubsub()
    pubsub.execute_command("AMBER.WATCH", "wh:*", "FROM", str(start), "PREV")
    assert pubsub.parse_response(block=True, timeout=10)[0] == "amber.watch"
    events = [pubsub.parse_response(block=True, timeout=10) for _ in range(3)]
    assert [(e[3], e[4]) for e in events] == [("wh:1", "put")] * 3
    assert [json.loads(e[5]) for e in events] == [
        {"name": "ada"},
        {"name": "ada", "age": "36"},
        {"age": "36"},
    ]
    # The diff is the merge patch of that one command: the field it set or removed.
    assert [json.loads(e[6]) for e in events] == [
        {"name": "ada"},
        {"age": "36"},
        {"name": None},
    ]
    assert events[1][2] == events[0][2] + 1 and events[2][2] == events[1][2] + 1
    pubsub.close()
    watcher.close()


def test_keyspace_notifications_for_hash_writes(amber_server: Any, r: Any) -> None:
    r.config_set("notify-keyspace-events", "KEA")
    sub = amber_server.redis(decode_responses=True).pubsub()
    try:
        sub.psubscribe("__keyspace@0__:kn:*")
        assert sub.get_message(timeout=5)["type"] == "psubscribe"
        r.hset("kn:1", "a", "1")
        r.hdel("kn:1", "a")
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            message = sub.get_message(timeout=1)
            if message and message["type"] == "pmessage":
                got.append(message["data"])
        assert got == ["set", "del"]
    finally:
        r.config_set("notify-keyspace-events", "")
        sub.close()


# -- side by side with redis-server ------------------------------------------------------

SCRIPT: list[tuple[str, ...]] = [
    ("DEL", "hx", "hy", "sx"),
    ("HSET", "hx", "name", "ada", "age", "36"),
    ("HSET", "hx", "name", "bob"),
    ("HSET", "hx", "a"),
    ("HSET", "hx", "a", "b", "c"),
    ("HGET", "hx", "name"),
    ("HGET", "hx", "nope"),
    ("HGET", "hy", "name"),
    ("HMGET", "hx", "name", "nope", "age"),
    ("HMSET", "hx", "k", "v"),
    ("HGETALL", "hx"),
    ("HGETALL", "hy"),
    ("HKEYS", "hx"),
    ("HVALS", "hx"),
    ("HLEN", "hx"),
    ("HLEN", "hy"),
    ("HEXISTS", "hx", "name"),
    ("HEXISTS", "hx", "nope"),
    ("HSTRLEN", "hx", "name"),
    ("HSTRLEN", "hx", "nope"),
    ("HSETNX", "hx", "name", "z"),
    ("HSETNX", "hx", "new", "z"),
    ("HINCRBY", "hx", "age", "2"),
    ("HINCRBY", "hx", "cnt", "-5"),
    ("HINCRBY", "hx", "name", "1"),
    ("HINCRBY", "hx", "age", "x"),
    ("HINCRBY", "hx", "age", "9223372036854775807"),
    ("HINCRBYFLOAT", "hx", "age", "0.5"),
    ("HINCRBYFLOAT", "hx", "f", "10"),
    ("HINCRBYFLOAT", "hx", "f", "2.25"),
    ("HINCRBYFLOAT", "hx", "name", "1"),
    ("HINCRBYFLOAT", "hx", "f", "abc"),
    ("HINCRBYFLOAT", "hx", "g", "0.1"),
    ("HINCRBYFLOAT", "hx", "g", "0.2"),  # 0.3, as Redis' long double prints it
    ("HINCRBYFLOAT", "hx", "g", "1e20"),
    ("HINCRBYFLOAT", "hx", "h", "-1e-7"),
    ("HINCRBYFLOAT", "hx", "h", "1e-7"),
    ("HINCRBYFLOAT", "hx", "h", " 1"),
    ("HINCRBYFLOAT", "hx", "h", "1_0"),
    ("HINCRBY", "hx", "h", "1_0"),
    ("HINCRBY", "hx", "h", "+1"),
    ("HSET", "hx", "u", "1_0"),
    ("HINCRBY", "hx", "u", "1"),
    ("HINCRBYFLOAT", "hx", "u", "1"),
    ("HDEL", "hx", "u"),
    ("HDEL", "hx", "g", "h"),
    ("HINCRBY", "hx", "age", "1"),
    ("HSCAN", "hx", "0"),
    ("HSCAN", "hx", "0", "MATCH", "n*"),
    ("HSCAN", "hx", "0", "COUNT", "0"),
    ("HSCAN", "hx", "abc"),
    ("HSCAN", "hy", "0"),
    ("HRANDFIELD", "hy"),
    ("HRANDFIELD", "hy", "3"),
    ("HDEL", "hx", "name", "nope", "age"),
    ("HDEL", "hy", "a"),
    ("SET", "sx", "str"),
    ("HGET", "sx", "a"),
    ("HSET", "sx", "a", "b"),
    ("HLEN", "sx"),
    ("HDEL", "hx", "k", "new", "cnt", "f"),
    ("EXISTS", "hx"),
    # TTL rules: hash writes keep the expiry; the key's deletion drops it.
    ("HSET", "hx", "a", "1", "b", "2"),
    ("EXPIRE", "hx", "100"),
    ("HSET", "hx", "c", "3"),
    ("HINCRBY", "hx", "a", "1"),
    ("HDEL", "hx", "c"),
    ("TTL", "hx"),
    ("HDEL", "hx", "a", "b"),
    ("TTL", "hx"),
    ("HSET", "hx", "a", "1"),
    ("TTL", "hx"),
    # GETEX
    ("GETEX", "sx"),
    ("GETEX", "nokey"),
    ("GETEX", "nokey", "EX", "0"),
    ("GETEX", "sx", "EX", "100"),
    ("TTL", "sx"),
    ("GETEX", "sx", "PERSIST"),
    ("TTL", "sx"),
    ("GETEX", "sx", "PERSIST"),
    ("GETEX", "sx", "PX", "200000"),
    ("TTL", "sx"),
    ("GETEX", "sx", "EXAT", str(int(time.time()) + 300)),
    ("TTL", "sx"),
    ("GETEX", "sx", "PXAT", str(int(time.time() * 1000) + 400_500)),
    ("TTL", "sx"),
    ("GETEX", "sx", "PX", "abc"),
    ("GETEX", "sx", "EX", "0"),
    ("GETEX", "sx", "EX", "-1"),
    ("GETEX", "sx", "PXAT", "0"),
    ("GETEX", "sx", "EX"),
    ("GETEX", "sx", "EX", "10", "PX", "10"),
    ("GETEX", "sx", "PERSIST", "EX", "10"),
    ("GETEX", "sx", "FOO"),
    ("TTL", "sx"),
    ("SET", "sx", "v", "EX", "100"),
    ("SET", "sx", "w", "KEEPTTL"),
    ("GETEX", "sx"),
    ("TTL", "sx"),
    ("GETEX", "sx", "EXAT", "1"),
    ("EXISTS", "sx"),
    ("GETEX", "hx"),
]


def test_hashes_and_getex_reply_as_redis_does(amber_server: Any, native_redis: Any) -> None:
    amber = amber_server.redis(decode_responses=True)
    try:
        ours, theirs = replies(amber, SCRIPT), replies(native_redis, SCRIPT)
    finally:
        amber.close()
    # One known difference: GET/GETEX read any document (a hash as JSON text).
    assert ours[-1] == '{"a":"1"}'
    assert theirs[-1].startswith("error: WRONGTYPE")
    assert list(zip(SCRIPT, ours, strict=True))[:-1] == list(zip(SCRIPT, theirs, strict=True))[:-1]


#: Random hash programs over two keys and three fields.
_key = st.sampled_from(["pa", "pb"])
_field = st.sampled_from(["f", "g", "h"])
_value = st.sampled_from(["1", "x", "-7", "2.5", ""])
_command = st.one_of(
    st.tuples(st.just("HSET"), _key, _field, _value),
    st.tuples(st.just("HSET"), _key, _field, _value, _field, _value),
    st.tuples(st.just("HSETNX"), _key, _field, _value),
    st.tuples(st.just("HDEL"), _key, _field),
    st.tuples(st.just("HDEL"), _key, _field, _field),
    st.tuples(st.just("HGET"), _key, _field),
    st.tuples(st.just("HMGET"), _key, _field, _field),
    st.tuples(st.just("HINCRBY"), _key, _field, st.sampled_from(["1", "-3"])),
    st.tuples(st.just("HINCRBYFLOAT"), _key, _field, st.sampled_from(["1.5", "-2"])),
    st.tuples(st.just("HGETALL"), _key),
    st.tuples(st.just("HKEYS"), _key),
    st.tuples(st.just("HVALS"), _key),
    st.tuples(st.just("HLEN"), _key),
    st.tuples(st.just("HEXISTS"), _key, _field),
    st.tuples(st.just("HSTRLEN"), _key, _field),
    st.tuples(st.just("EXISTS"), _key),
    st.tuples(st.just("DEL"), _key),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(_command, min_size=1, max_size=25))
def test_random_hash_programs_reply_as_redis_does(
    amber_server: Any, native_redis: Any, program: list[tuple[str, ...]]
) -> None:
    amber = amber_server.redis(decode_responses=True)
    try:
        script = [("DEL", "pa", "pb"), *program]
        assert replies(amber, script) == replies(native_redis, script)
    finally:
        amber.close()
