"""redis-py (sync) against a real ``amber serve``: strings, keys, documents, transactions."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.commands.json.path import Path as JsonPath
from redis.retry import Retry


@pytest.fixture
def r(amber_server: Any) -> Any:
    client = amber_server.redis(decode_responses=True)
    client.flushall()
    yield client
    client.close()


def test_strings(r: Any) -> None:
    assert r.ping() is True
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == "hello"
    assert r.get("missing") is None
    assert r.set("greeting", "x", nx=True) is None
    assert r.set("nope", "x", xx=True) is None
    assert r.set("greeting", "hi", xx=True, get=True) == "hello"
    assert r.append("greeting", " there") == 8
    assert r.strlen("greeting") == 8
    assert r.getrange("greeting", 0, 1) == "hi"
    assert r.setnx("greeting", "no") is False
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget("a", "b", "c") == ["1", "2", None]
    assert r.incr("a") == 2
    assert r.incrby("a", 10) == 12
    assert r.decr("a") == 11
    assert r.decrby("a", 5) == 6
    assert r.incrbyfloat("b", 0.5) == 2.5
    assert r.get("a") == "6"
    assert r.incr("fresh") == 1
    assert r.getdel("fresh") == "1"
    assert r.exists("fresh") == 0
    assert r.delete("a", "b", "missing") == 2
    assert r.unlink("greeting") == 1
    assert r.dbsize() == 0


def test_values_are_text_and_documents_read_as_json(r: Any) -> None:
    r.set("t:k", "é ✓")
    assert r.get("t:k") == "é ✓"
    r.json().set("doc", "$", {"a": [1, 2]})
    assert json.loads(r.get("doc")) == {"a": [1, 2]}
    assert r.type("doc") == "ReJSON-RL"
    assert r.type("t:k") == "string"
    assert r.type("nothing") == "none"
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.incr("doc")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.append("doc", "x")
    raw = r.connection_pool.get_connection()
    try:
        raw.send_command("SET", "bin", b"\xff\xfe")
        with pytest.raises(redis.ResponseError, match="UTF-8"):
            raw.read_response()
    finally:
        r.connection_pool.release(raw)


def test_table_key_mapping(r: Any, amber_server: Any) -> None:
    r.set("users:42:name", "ada")
    r.set("plain", "p")
    assert sorted(r.keys("*")) == ["plain", "users:42:name"]
    assert r.keys("users:*") == ["users:42:name"]
    with pytest.raises(redis.ResponseError, match="table"):
        r.set("bad table:x", "v")
    info = r.info("amber")
    assert info["tables"] == 2


def test_expiry(r: Any) -> None:
    r.set("e", "v", ex=100)
    assert 99 <= r.ttl("e") <= 100
    assert 99_000 <= r.pttl("e") <= 100_000
    assert r.persist("e") is True
    assert r.ttl("e") == -1
    assert r.ttl("missing") == -2
    assert r.expire("e", 50) is True
    assert r.expire("e", 100, nx=True) is False
    r.set("e", "w", keepttl=True)
    assert 0 < r.ttl("e") <= 50
    r.set("e", "w")
    assert r.ttl("e") == -1
    r.set("short", "v", px=80)
    r.incr("counter")
    r.pexpire("counter", 80)
    time.sleep(0.25)
    assert r.get("short") is None
    assert r.exists("counter") == 0
    assert r.expireat("e", int(time.time()) - 1) is True
    assert r.get("e") is None
    with pytest.raises(redis.ResponseError, match="invalid expire time"):
        r.set("x", "v", ex=0)


def test_scan_walks_every_key_once(r: Any) -> None:
    with r.pipeline(transaction=False) as p:
        for i in range(250):
            p.set(f"t{i % 3}:k{i:03d}", "v")
        for i in range(30):
            p.set(f"k{i}", "v")
        p.execute()
    seen = list(r.scan_iter(count=17))
    assert len(seen) == len(set(seen)) == 280
    assert sorted(r.scan_iter(match="t1:*", count=5)) == sorted(
        f"t1:k{i:03d}" for i in range(250) if i % 3 == 1
    )
    assert len(list(r.scan_iter(match="k1?"))) == 10
    r.json().set("t0:doc", "$", {"a": 1})
    assert list(r.scan_iter(_type="ReJSON-RL")) == ["t0:doc"]
    cursor, keys = r.scan(0, count=1000)
    assert cursor == 0 and len(keys) == 281


def test_json_documents(r: Any) -> None:
    j = r.json()
    assert j.set("acct:1", "$", {"user": "ada", "tags": ["x"], "n": {"a": 1}}) is True
    assert j.get("acct:1") == {"user": "ada", "tags": ["x"], "n": {"a": 1}}
    assert j.get("acct:1", "$.user") == ["ada"]
    assert j.get("acct:1", ".n.a") == 1
    assert j.get("acct:1", "$.tags[0]") == ["x"]
    assert j.get("acct:1", "$.missing") == []
    assert j.set("acct:1", "$.n.b", 2) is True
    assert j.set("acct:1", "$.x.y", 2) is None  # no parent
    assert j.set("acct:1", "$.user", "bob", nx=True) is None
    assert j.set("acct:1", "$.age", 36, xx=True) is None
    assert j.merge("acct:1", "$", {"age": 36, "tags": None}) is True
    assert j.merge("acct:1", "$.n", {"a": None, "c": 3}) is True
    assert j.get("acct:1") == {"user": "ada", "n": {"b": 2, "c": 3}, "age": 36}
    assert j.type("acct:1", "$.age") in (["integer"], "integer")  # redis-py unwraps one
    assert j.type("acct:1") == "object"
    assert j.mget(["acct:1", "acct:2"], "$.user") == [["ada"], None]
    assert j.delete("acct:1", "$.n.b") == 1
    assert j.delete("acct:1", "$.nothing") == 0
    assert j.numincrby("acct:1", "$.age", 1) == [37]
    assert j.get("acct:1", "$.age", "$.user") == {"$.age": [37], "$.user": ["ada"]}
    assert j.set("acct:2", "$", [1, 2], nx=True) is True
    with pytest.raises(redis.ResponseError, match="root"):
        j.set("acct:3", "$.a", 1)
    with pytest.raises(redis.ResponseError, match="not supported"):
        j.get("acct:1", "$..user")
    assert j.delete("acct:2") == 1
    assert r.exists("acct:2") == 0
    assert j.get("nothing") is None
    r.execute_command("JSON.MERGE", "new", "$", '{"fresh": true}')
    assert j.get("new") == {"fresh": True}


def test_json_keeps_ttl_and_legacy_paths(r: Any) -> None:
    j = r.json()
    j.set("d", JsonPath.root_path(), {"a": 1})
    r.expire("d", 100)
    j.set("d", ".a", 2)
    assert j.get("d", ".a") == 2
    assert r.ttl("d") > 0
    with pytest.raises(redis.ResponseError, match="does not exist"):
        j.get("d", ".nope")


def test_pipelines_keep_order_and_see_their_own_writes(r: Any) -> None:
    with r.pipeline(transaction=False) as p:
        for i in range(200):
            p.set(f"p:{i}", str(i))
            p.incr("p:counter")
            p.get(f"p:{i}")
        results = p.execute()
    assert results[0::3] == [True] * 200
    assert results[1::3] == list(range(1, 201))
    assert results[2::3] == [str(i) for i in range(200)]


def test_multi_exec_is_atomic_and_reads_its_writes(r: Any) -> None:
    with r.pipeline() as p:
        p.set("m:a", "1").incr("m:a").get("m:a").delete("m:a").exists("m:a")
        assert p.execute() == [True, 2, "2", 1, 0]
    conn = r.connection_pool.get_connection()

    def call(*args: str) -> Any:
        conn.send_command(*args)
        return conn.read_response()

    try:
        assert call("MULTI") == "OK"
        assert call("SET", "m:b", "x") == "QUEUED"
        assert call("INCR", "m:b") == "QUEUED"
        assert call("SET", "m:c", "y") == "QUEUED"
        result = call("EXEC")
        assert result[0] == "OK" and isinstance(result[1], redis.ResponseError)
        assert result[2] == "OK"
        assert r.get("m:c") == "y"
        call("MULTI")
        with pytest.raises(redis.ResponseError, match="unknown command"):
            call("NOSUCH")
        with pytest.raises(redis.exceptions.ExecAbortError):
            call("EXEC")
        with pytest.raises(redis.ResponseError, match="without MULTI"):
            call("EXEC")
        assert call("MULTI") == "OK"
        assert call("DISCARD") == "OK"
    finally:
        r.connection_pool.release(conn)


def test_watch_aborts_exec_when_a_watched_key_changed(r: Any, amber_server: Any) -> None:
    other = amber_server.redis(decode_responses=True)
    r.set("w:balance", "10")
    with r.pipeline() as p:
        p.watch("w:balance")
        balance = int(p.get("w:balance"))
        other.set("w:balance", "0")  # someone else gets in between
        p.multi()
        p.set("w:balance", str(balance - 5))
        with pytest.raises(redis.WatchError):
            p.execute()
    assert r.get("w:balance") == "0"

    def transfer(pipe: Any) -> None:
        value = int(pipe.get("w:balance"))
        pipe.multi()
        pipe.set("w:balance", str(value + 1))

    assert r.transaction(transfer, "w:balance") == [True]
    assert r.get("w:balance") == "1"
    other.close()


def test_concurrent_increments_lose_nothing(amber_server: Any) -> None:
    clients = [amber_server.redis() for _ in range(8)]
    clients[0].delete("race:n")

    def work(client: Any) -> None:
        for _ in range(100):
            client.incr("race:n")
        with client.pipeline(transaction=False) as p:
            for _ in range(50):
                p.incr("race:n")
            p.execute()

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert int(clients[0].get("race:n")) == 8 * 150
    for c in clients:
        c.close()


def test_errors_look_like_redis(r: Any) -> None:
    with pytest.raises(redis.ResponseError, match=r"^unknown command 'NOPE', with args beginning"):
        r.execute_command("NOPE", "a")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'get' command"):
        r.execute_command("GET")
    with pytest.raises(redis.ResponseError, match="syntax error"):
        r.execute_command("SET", "k", "v", "BOGUS")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        r.execute_command("INCRBY", "k", "1.5")
    with pytest.raises(redis.ResponseError, match="DB index is out of range"):
        r.execute_command("SELECT", "1")
    assert r.execute_command("SELECT", "0") in (True, "OK")


def test_server_commands(r: Any, amber_server: Any) -> None:
    assert r.echo("hi") == "hi"
    seconds, _micros = r.time()
    assert abs(seconds - time.time()) < 5
    assert r.client_setname("me") is True
    assert r.client_getname() == "me"
    assert isinstance(r.client_id(), int)
    assert any(c["name"] == "me" for c in r.client_list())
    assert r.command_count() > 50
    assert "get" in r.command()
    conn = r.connection_pool.get_connection()
    try:
        conn.send_command("COMMAND", "DOCS", "GET")
        assert "get" in conn.read_response()
        conn.send_command("COMMAND", "INFO", "get", "nosuch")
        assert conn.read_response()[1] is None
    finally:
        r.connection_pool.release(conn)
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    assert r.config_get("save") == {"save": ""}
    assert r.config_get("appendfsync") == {"appendfsync": "always"}
    assert r.config_set("notify-keyspace-events", "KEA") is True
    assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": "KEA"}
    r.config_set("notify-keyspace-events", "")
    with pytest.raises(redis.ResponseError, match="immutable"):
        r.config_set("port", "1")
    info = r.info()
    assert info["role"] == "master"
    assert info["amber_durability"] == "always"
    assert "db0" not in info or info["db0"]["keys"] >= 0
    assert r.info("replication")["connected_slaves"] == 0
    assert "cmdstat_get" in r.info("commandstats") or True
    assert r.execute_command("AMBER.REV") >= 0
    r.set("rev:k", "1")
    rev = r.execute_command("AMBER.REV", "rev:k")
    fields = rev if isinstance(rev, dict) else dict(zip(rev[::2], rev[1::2], strict=True))
    assert int(fields["version"]) == 1


def test_amber_txn_compares_revisions(r: Any) -> None:
    r.set("tx:a", "1")
    rev = r.execute_command("AMBER.REV")
    spec = {
        "compares": [["tx:a", "mod_revision", "=", rev]],
        "ops": [["put", "tx:a", "2"], ["merge", "tx:doc", {"n": 1}], ["delete", "tx:none"]],
    }
    new_rev = r.execute_command("AMBER.TXN", json.dumps(spec))
    assert new_rev == rev + 1
    assert r.get("tx:a") == "2"
    assert r.json().get("tx:doc") == {"n": 1}
    with pytest.raises(redis.ResponseError, match="CONDITION"):
        r.execute_command("AMBER.TXN", json.dumps(spec))


def test_resp3_hello(amber_server: Any) -> None:
    r3 = amber_server.redis(protocol=3, decode_responses=True)
    r3.set("r3", "v")
    assert r3.get("r3") == "v"
    assert r3.get("r3-missing") is None
    assert r3.config_get("appendonly") == {"appendonly": "yes"}
    hello = r3.execute_command("HELLO", "3")
    assert hello["proto"] == 3
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        r3.execute_command("HELLO", "4")
    r3.close()


def test_requirepass(server_factory: Any) -> None:
    server = server_factory(
        "--requirepass", "s3cret", ports=("--port", "0", "--http-port", "-1", "--kvtext-port", "-1")
    )
    no_retry = Retry(NoBackoff(), 0)
    anonymous = server.redis(retry=no_retry)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get("k")
    with pytest.raises(redis.AuthenticationError):
        server.redis(password="wrong", retry=no_retry).ping()
    good = server.redis(password="s3cret", decode_responses=True)
    assert good.set("k", "v") and good.get("k") == "v"
    resp3 = server.redis(password="s3cret", protocol=3)
    assert resp3.ping()
    for client in (anonymous, good, resp3):
        client.close()
