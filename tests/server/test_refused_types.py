"""List, set and sorted-set commands answer a clear error; redis-benchmark against Amber."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from amber.server.commands.refused import REFUSED


@pytest.fixture
def r(amber_server: Any) -> Iterator[Any]:
    client = amber_server.redis(decode_responses=True)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        (("LPUSH", "l", "a"), "JSON.ARRAPPEND"),
        (("rpop", "l"), "JSON.ARRPOP"),
        (("LRANGE", "l", "0", "-1"), "JSON.ARRAPPEND"),
        (("LLEN",), "JSON.ARRAPPEND"),  # any arity: the explanation, not an arity error
        (("SADD", "s", "m"), "HSET"),
        (("SMEMBERS", "s"), "JSON.ARRAPPEND"),
        (("ZADD", "z", "1", "m"), "HINCRBYFLOAT"),
        (("ZRANGE", "z", "0", "-1"), "JSON.ARRAPPEND"),
    ],
)
def test_refused_with_what_to_use_instead(r: Any, command: tuple[str, ...], hint: str) -> None:
    with pytest.raises(redis.ResponseError) as info:
        r.execute_command(*command)
    text = str(info.value)
    assert text.startswith(
        f"{command[0].upper()} is not supported: Amber stores JSON documents; use JSON arrays"
    )
    assert hint in text
    assert r.ping() is True  # an error reply, the connection stays
    assert r.exists("l", "s", "z") == 0


def test_refused_commands_in_multi_and_command_info(r: Any) -> None:
    pipe = r.pipeline(transaction=True)
    pipe.set("rf:1", "a")
    pipe.execute_command("SADD", "rf:2", "x")
    pipe.get("rf:1")
    result = pipe.execute(raise_on_error=False)
    assert result[0] is True and result[2] == "a"
    assert "SADD is not supported" in str(result[1])
    info = r.execute_command("COMMAND", "INFO", "zadd")
    assert info["zadd"]["acl_categories"] == ["@sortedset"]
    assert info["zadd"]["arity"] == -1 and info["zadd"]["flags"] == []  # never touches data
    assert sum(len(names) for names in REFUSED.values()) == len(
        {name for names in REFUSED.values() for name in names}
    )


BENCHMARK = shutil.which("redis-benchmark")
needs_benchmark = pytest.mark.skipif(BENCHMARK is None, reason="redis-benchmark not installed")


def _benchmark(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    assert BENCHMARK is not None
    return subprocess.run(
        [BENCHMARK, "-p", str(port), "-q", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_benchmark
def test_redis_benchmark_runs_the_supported_tests_to_the_end(amber_server: Any) -> None:
    tests = "ping_inline,ping_mbulk,set,get,incr,hset,mset"
    done = _benchmark(amber_server.port, "-n", "300", "-c", "10", "-t", tests)
    assert done.returncode == 0, done.stderr
    out = done.stdout.replace("\r", "\n")
    for name in (
        "PING_INLINE:",
        "PING_MBULK:",
        "SET:",
        "GET:",
        "INCR:",
        "HSET:",
        "MSET (10 keys):",
    ):
        assert any(
            line.startswith(name) and "requests per second" in line for line in out.split("\n")
        ), (
            name,
            out,
        )
    client = amber_server.redis()
    assert client.hlen("myhash") >= 1  # redis-benchmark's HSET wrote a JSON object
    client.close()


@needs_benchmark
def test_redis_benchmark_default_run_stops_at_the_first_refusal(amber_server: Any) -> None:
    """redis-benchmark 7 exits on any error reply (against redis-server too: see the report).

    The default run gets through the commands Amber has and stops at LPUSH
    with Amber's explanation, not a dropped connection.
    """
    done = _benchmark(amber_server.port, "-n", "100", "-c", "5")
    out = (done.stdout + done.stderr).replace("\r", "\n")
    assert done.returncode == 1
    assert "Error from server: ERR LPUSH is not supported: Amber stores JSON documents" in out
    assert "INCR:" in out  # the tests before it ran
