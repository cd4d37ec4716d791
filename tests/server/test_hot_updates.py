"""Hot-key read-modify-writes (issue #13.4): INCR, APPEND, HINCRBY apply with the batch.

They used to read, compute and commit with a compare; 50 clients on one key
made most commits fail and run again. Now each is an ``Update`` op the store
computes when it applies the batch: no conflict, no retry, group commit. The
answers must stay Redis' — checked against a real redis-server — also inside
MULTI, where a command that fails leaves the others applied.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from server_support import ServerProcess

THREADS = 50
EACH = 40


def _fresh_pair(amber: redis.Redis, real: redis.Redis, *keys: str) -> None:
    for client in (amber, real):
        client.delete(*keys)


def test_fifty_clients_on_one_counter_lose_nothing(amber_server: ServerProcess) -> None:
    amber_server.redis().delete("hot:n", "hot:s", "hot:h")
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with amber_server.redis() as c:
                for i in range(EACH):
                    c.incr("hot:n")
                    c.append("hot:s", "x")
                    c.hincrby("hot:h", f"f{n % 3}", 2)
                    if i % 10 == 0:  # pipelined ones share the same key
                        c.pipeline(transaction=False).incr("hot:n").incrby("hot:n", 4).execute()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    c = amber_server.redis()
    assert int(c.get("hot:n")) == THREADS * EACH + THREADS * (EACH // 10) * 5
    assert c.strlen("hot:s") == THREADS * EACH
    fields = c.hgetall("hot:h")
    assert sum(int(v) for v in fields.values()) == THREADS * EACH * 2


def test_each_incr_answers_its_own_value(amber_server: ServerProcess) -> None:
    """Concurrent INCRs answer distinct values: each saw the counter it changed."""
    c = amber_server.redis()
    c.delete("hot:ids")
    seen: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        with amber_server.redis() as mine:
            got = [mine.incr("hot:ids") for _ in range(EACH)]
        with lock:
            seen.extend(got)

    threads = [threading.Thread(target=client) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seen) == list(range(1, 10 * EACH + 1))


SCRIPTS: list[list[tuple[str, ...]]] = [
    [("SET", "u:k", "abc"), ("INCR", "u:k"), ("APPEND", "u:k", "d"), ("GET", "u:k")],
    [("INCR", "u:k"), ("INCRBY", "u:k", "41"), ("GET", "u:k"), ("DECRBY", "u:k", "2")],
    [("SET", "u:k", str(2**63 - 1)), ("INCR", "u:k"), ("GET", "u:k")],
    [("HSET", "u:h", "n", "x"), ("HINCRBY", "u:h", "n", "1"), ("HINCRBY", "u:h", "m", "5")],
    [("APPEND", "u:k", "hé"), ("STRLEN", "u:k"), ("INCR", "u:k"), ("APPEND", "u:k", "1")],
    [("SET", "u:k", "5"), ("EXPIRE", "u:k", "100"), ("INCR", "u:k"), ("TTL", "u:k")],
    [("HSET", "u:k", "a", "1"), ("INCR", "u:k"), ("APPEND", "u:k", "x"), ("HGET", "u:k", "a")],
    # Integers as Redis' string2ll reads them: no leading zero, no "-0" or "+1".
    [("SET", "u:k", "01"), ("INCR", "u:k"), ("SET", "u:k", "-0"), ("DECR", "u:k"), ("GET", "u:k")],
    [("INCRBY", "u:k", "01"), ("INCRBY", "u:k", "+1"), ("DECRBY", "u:k", "-0"), ("GET", "u:k")],
    [("HSET", "u:h", "n", "007"), ("HINCRBY", "u:h", "n", "1"), ("HINCRBY", "u:h", "n", "08")],
    [("SET", "u:k", "0"), ("INCR", "u:k"), ("EXPIRE", "u:k", "0100"), ("TTL", "u:k")],
]


def _run(client: redis.Redis, script: list[tuple[str, ...]], multi: bool) -> list[Any]:
    pipe = client.pipeline(transaction=multi)
    for command in script:
        pipe.execute_command(*command)
    replies = pipe.execute(raise_on_error=False)
    return [f"error: {r}" if isinstance(r, redis.ResponseError) else r for r in replies]


@pytest.mark.parametrize("multi", [False, True], ids=["pipeline", "multi"])
@pytest.mark.parametrize("script", SCRIPTS, ids=[str(i) for i in range(len(SCRIPTS))])
def test_answers_as_redis(
    amber_server: ServerProcess,
    redis_server: redis.Redis,
    script: list[tuple[str, ...]],
    multi: bool,
) -> None:
    amber = amber_server.redis()
    _fresh_pair(amber, redis_server, "u:k", "u:h")
    ours = _run(amber, script, multi)
    theirs = _run(redis_server, script, multi)
    assert ours == theirs
    for key in ("u:k", "u:h"):  # and the same state after
        assert amber.type(key) in (redis_server.type(key), b"ReJSON-RL")
        if redis_server.type(key) == b"string":
            assert amber.get(key) == redis_server.get(key)


def test_watch_aborts_exec_when_an_update_changed_the_key(amber_server: ServerProcess) -> None:
    c = amber_server.redis()
    c.set("u:w", "1")
    with c.pipeline() as pipe:
        pipe.watch("u:w")
        amber_server.redis().incr("u:w")  # another client, after WATCH
        pipe.multi()
        pipe.set("u:w", "100")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert c.get("u:w") == b"2"
