"""The ``amber serve`` process: raw sockets, limits, redis-cli, signals, crashes."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amber.errors import InvalidArgument
from amber.server.settings import load_settings

RESP_ONLY = ("--port", "0", "--http-port", "-1", "--kvtext-port", "-1")


def raw(server: Any) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def read_until(sock: socket.socket, marker: bytes, limit: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_raw_resp_and_inline_commands(amber_server: Any) -> None:
    with raw(amber_server) as sock:
        sock.sendall(b"PING\r\n")
        assert read_until(sock, b"\r\n") == b"+PONG\r\n"
        sock.sendall(b'SET raw:k "hello world"\r\nGET raw:k\r\n')
        assert read_until(sock, b"world\r\n") == b"+OK\r\n$11\r\nhello world\r\n"
        pipeline = b"".join(b"*2\r\n$4\r\nINCR\r\n$7\r\nraw:cnt\r\n" for _ in range(100))
        sock.sendall(pipeline + b"*2\r\n$3\r\nGET\r\n$7\r\nraw:cnt\r\n")
        data = read_until(sock, b"$3\r\n100\r\n")
        assert data.endswith(b"$3\r\n100\r\n") and data.count(b":") == 100


def test_protocol_errors_close_only_that_connection(amber_server: Any) -> None:
    client = amber_server.redis()
    client.set("pe:k", "v")
    with raw(amber_server) as sock:
        sock.sendall(b"*1\r\n:5\r\n")
        assert read_until(sock, b"\r\n").startswith(b"-ERR Protocol error")
        assert sock.recv(100) == b""  # closed
    with raw(amber_server) as sock:
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$4\r\npe:k\r\n$100\r\nshort")  # truncated
    assert client.get("pe:k") == b"v"
    client.close()


@given(junk=st.binary(min_size=1, max_size=200))
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_random_bytes_never_hurt_the_server(amber_server: Any, junk: bytes) -> None:
    with raw(amber_server) as sock:
        sock.settimeout(0.05)
        try:
            sock.sendall(junk)
            sock.recv(4096)
        except OSError:
            pass
    with raw(amber_server) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert read_until(sock, b"\r\n") == b"+PONG\r\n"


def test_subscribed_resp2_connection_allows_only_pubsub(amber_server: Any) -> None:
    with raw(amber_server) as sock:
        sock.sendall(b"SUBSCRIBE chan\r\n")
        assert b"subscribe" in read_until(sock, b":1\r\n")
        sock.sendall(b"GET k\r\n")
        assert b"only (P|S)SUBSCRIBE" in read_until(sock, b"\r\n")
        sock.sendall(b"PING\r\n")
        assert read_until(sock, b"\r\n\r\n") == b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"


def test_redis_cli(amber_server: Any) -> None:
    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed (Debian's redis-tools)")

    def cli(*args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(amber_server.port), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout.strip()

    assert cli("PING") == "PONG"
    assert cli("SET", "cli:k", "v") == "OK"
    assert cli("GET", "cli:k") == "v"
    assert cli("JSON.SET", "cli:doc", "$", '{"age": 36}') == "OK"
    assert cli("JSON.MERGE", "cli:doc", "$", '{"age": 37}') == "OK"
    assert cli("JSON.GET", "cli:doc") == '{"age":37}'
    assert cli("INCR", "cli:n") == "1"
    assert "amber_durability:always" in cli("INFO", "persistence")
    assert "cli:k" in cli("--scan", "--pattern", "cli:*")
    assert cli("DBSIZE").isdigit()


def test_limits_answer_clear_errors_and_the_server_stays_up(server_factory: Any) -> None:
    server = server_factory(
        "--max-clients", "3", env={"AMBER_MAX_REQUEST_BYTES": "20000"}, ports=RESP_ONLY
    )
    held = [raw(server) for _ in range(3)]
    for sock in held:
        sock.sendall(b"PING\r\n")
        assert read_until(sock, b"\r\n") == b"+PONG\r\n"
    with raw(server) as extra:
        assert read_until(extra, b"\r\n") == b"-ERR max number of clients reached\r\n"
    held.pop().close()
    time.sleep(0.2)
    with raw(server) as sock:
        sock.sendall(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$50000\r\n" + b"x" * 30000)
        assert b"larger than 20000" in read_until(sock, b"\r\n")
    client = server.redis()
    assert client.ping()
    assert client.config_get("proto-max-bulk-len") == {"proto-max-bulk-len": "20000"}
    for sock in held:
        sock.close()
    client.close()
    assert server.stop() == 0


def test_value_size_limit(server_factory: Any) -> None:
    server = server_factory(env={"AMBER_MAX_VALUE_BYTES": "1000"}, ports=RESP_ONLY)
    client = server.redis()
    with pytest.raises(redis.ResponseError, match="limit is 1000"):
        client.set("big", "x" * 5000)
    assert client.set("small", "x") is True
    client.close()


def test_idle_timeout(server_factory: Any) -> None:
    server = server_factory("--idle-timeout", "1", ports=RESP_ONLY)
    with raw(server) as sock:
        sock.sendall(b"PING\r\n")
        assert read_until(sock, b"\r\n") == b"+PONG\r\n"
        sock.settimeout(5)
        assert sock.recv(10) == b""  # closed by the server after about a second


def test_sigterm_finishes_in_flight_work_and_exits_cleanly(server_factory: Any) -> None:
    server = server_factory(ports=RESP_ONLY)
    client = server.redis()
    with client.pipeline(transaction=False) as p:
        for i in range(500):
            p.set(f"term:{i}", "v")
        p.execute()
    info = client.info("amber")
    assert "server_job_keyspace-notifier" in info and "server_job_metrics" in info
    client.close()
    assert server.stop(signal.SIGTERM) == 0
    assert server.lines[-1] == "stopped"
    restarted = server_factory(data=server.data, ports=RESP_ONLY)
    again = restarted.redis()
    assert again.dbsize() == 500
    again.close()
    assert restarted.stop(signal.SIGINT) == 0


def test_sigkill_during_write_load_loses_no_acknowledged_set(server_factory: Any) -> None:
    server = server_factory("--durability", "always", ports=RESP_ONLY)
    acknowledged: list[set[str]] = [set() for _ in range(8)]
    stop = threading.Event()

    def load(n: int) -> None:
        client = server.redis(socket_timeout=5)
        i = 0
        try:
            while not stop.is_set() and i < 100_000:
                if i % 2:
                    keys = [f"crash:{n}:{i}:{j}" for j in range(8)]
                    with client.pipeline(transaction=False) as p:
                        for key in keys:
                            p.set(key, "v")
                        p.execute()
                    acknowledged[n].update(keys)
                else:
                    key = f"crash:{n}:{i}"
                    client.set(key, "v")
                    acknowledged[n].add(key)
                i += 1
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass
        finally:
            client.close()

    threads = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    acked = set().union(*acknowledged)
    assert len(acked) > 100
    restarted = server_factory(data=server.data, ports=RESP_ONLY)
    client = restarted.redis(decode_responses=True)
    present: set[str] = set()
    keys = sorted(acked)
    for i in range(0, len(keys), 500):
        chunk = keys[i : i + 500]
        present.update(k for k, v in zip(chunk, client.mget(chunk), strict=True) if v == "v")
    client.close()
    assert acked <= present, f"{len(acked - present)} acknowledged SETs lost"


def test_settings_come_from_defaults_toml_env_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "amber.toml"
    toml.write_text('port = 7000\nhttp-port = 7001\ndurability = "interval"\nrequirepass = "a"\n')
    env = {"AMBER_PORT": "7100", "AMBER_IDLE_TIMEOUT": "30"}
    got = load_settings({"requirepass": "b", "data": None}, config_file=toml, environ=env)
    assert (got.port, got.http_port, got.durability, got.requirepass) == (
        7100,
        7001,
        "interval",
        "b",
    )
    assert got.idle_timeout == 30 and got.data == "data"
    with pytest.raises(InvalidArgument, match="unknown setting 'prot'"):
        (tmp_path / "bad.toml").write_text("prot = 1\n")
        load_settings(config_file=tmp_path / "bad.toml", environ={})
    with pytest.raises(InvalidArgument, match="AMBER_PORT"):
        load_settings(environ={"AMBER_PORT": "x"})
    with pytest.raises(InvalidArgument, match="durability"):
        load_settings({"durability": "sometimes"}, environ={})
