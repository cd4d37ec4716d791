"""A real ``amber serve``: shutdown on signals, SAVE/BGSAVE, durable CREATE, connection gauge."""

from __future__ import annotations

import select
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:  # only for annotations: two conftest modules exist
    from conftest import ServerFactory, ServerProcess

RESP_ONLY = ("--port", "0", "--http-port", "-1", "--kvtext-port", "-1")


def _http(server: ServerProcess) -> httpx.Client:
    url = f"http://{server.host}:{server.ports['http']}"
    return httpx.Client(base_url=url, timeout=httpx.Timeout(20, read=10))


def _connect(server: ServerProcess, frontend: str) -> socket.socket:
    return socket.create_connection((server.host, server.ports[frontend]), timeout=10)


def _read_until(sock: socket.socket, marker: bytes, limit: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + limit
    while marker not in data and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def _eventually(check: Callable[[], bool], what: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _sample(metrics_text: str, name: str, frontend: str) -> float | None:
    prefix = f'{name}{{frontend="{frontend}"}} '
    for line in metrics_text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def _refused(server: ServerProcess, frontend: str) -> bool:
    try:
        with _connect(server, frontend) as sock:
            sock.settimeout(2)
            sock.sendall(b"PING\r\n")
            return sock.recv(100) in (b"", b"-ERR server is shutting down\r\n")
    except OSError:
        return True


# -- signals -----------------------------------------------------------------------------

_BODY = b'{"held": "through shutdown"}'


def _hold_http_put(server: ServerProcess, key: str) -> socket.socket:
    """An HTTP PUT whose body is half sent: a request in flight until the rest comes."""
    sock = _connect(server, "http")
    head = (
        f"PUT /v1/tables/held/keys/{key} HTTP/1.1\r\nHost: amber\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(_BODY)}\r\n\r\n"
    )
    sock.sendall(head.encode() + _BODY[:5])
    with _http(server) as http:

        def in_flight() -> bool:
            text = http.get("/metrics").text
            # The scrape itself is one request in flight; the held PUT the other.
            return (_sample(text, "amber_requests_in_flight", "http") or 0) >= 2

        _eventually(in_flight, "the held PUT to reach the server")
    return sock


def test_sigterm_stops_accepting_and_finishes_the_request_in_flight(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(env={"AMBER_SHUTDOWN_TIMEOUT": "60"})
    client = server.redis()
    assert client.set("before:k", "acknowledged")
    client.close()
    held = _hold_http_put(server, "graceful")
    server.proc.send_signal(signal.SIGTERM)
    _eventually(lambda: _refused(server, "resp"), "the RESP listener to close")
    _eventually(lambda: _refused(server, "kvtext"), "the kvtext listener to close")
    assert server.proc.poll() is None, "exited with a request still in flight"
    held.sendall(_BODY[5:])
    reply = _read_until(held, b"\r\n\r\n")
    held.close()
    assert reply.startswith(b"HTTP/1.1 201"), reply
    assert server.proc.wait(20) == 0, server.stderr()
    server.stop()
    assert server.lines[-1] == "stopped"

    restarted = server_factory(data=server.data)
    with _http(restarted) as http:
        assert http.get("/v1/tables/held/keys/graceful").json() == {"held": "through shutdown"}
    again = restarted.redis(decode_responses=True)
    assert again.get("before:k") == "acknowledged"
    again.close()
    assert restarted.stop(signal.SIGINT) == 0


def test_a_second_signal_during_a_slow_shutdown_exits_at_once(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(env={"AMBER_SHUTDOWN_TIMEOUT": "60"})
    client = server.redis()
    with client.pipeline(transaction=False) as pipe:
        for i in range(200):
            pipe.set(f"acked:{i}", str(i))
        pipe.execute()
    client.close()
    with _connect(server, "kvtext") as kv:
        kv.sendall(b"CREATE kept\r\nPUT kept k v\r\n")
        assert _read_until(kv, b"OK\r\nOK\r\n") == b"OK\r\nOK\r\n"
    held = _hold_http_put(server, "never-finished")
    server.proc.send_signal(signal.SIGTERM)
    _eventually(lambda: _refused(server, "resp"), "the RESP listener to close")
    time.sleep(0.5)
    assert server.proc.poll() is None, "the held request should keep the shutdown waiting"
    started = time.monotonic()
    server.proc.send_signal(signal.SIGINT)
    code = server.proc.wait(10)
    elapsed = time.monotonic() - started
    held.close()
    server.stop()
    assert code == 128 + signal.SIGINT, server.stderr()
    assert elapsed < 5, f"the second signal took {elapsed:.1f}s"
    assert "second signal" in server.stderr()
    assert "stopped" not in server.lines

    restarted = server_factory(data=server.data)
    again = restarted.redis(decode_responses=True)
    assert again.mget([f"acked:{i}" for i in range(200)]) == [str(i) for i in range(200)]
    again.close()
    with _connect(restarted, "kvtext") as kv:
        kv.sendall(b"GET kept k\r\n")
        assert _read_until(kv, b"OK\r\n") == b"v\r\nOK\r\n"
    with _http(restarted) as http:
        assert http.get("/v1/tables/held/keys/never-finished").status_code == 404
    assert restarted.stop() == 0


# -- SAVE and BGSAVE -----------------------------------------------------------------------


def _persistence(client: object) -> dict[str, object]:
    return client.info("persistence")  # type: ignore[attr-defined, no-any-return]


def test_bgsave_answers_at_once_and_reports_in_info(server_factory: ServerFactory) -> None:
    server = server_factory(ports=RESP_ONLY)
    snapshots = server.data / "snapshots"
    client = server.redis(decode_responses=True)
    for i in range(50):
        client.set(f"snap:{i}", "v")
    before = _persistence(client)
    assert before["rdb_bgsave_in_progress"] == 0
    assert before["rdb_changes_since_last_save"] == 50
    assert before["rdb_last_save_time"] == client.lastsave().timestamp()
    assert not list(snapshots.glob("*.snap"))

    # One read: the first starts a save, the second finds it running.
    with _connect(server, "resp") as sock:
        sock.sendall(b"BGSAVE\r\nBGSAVE\r\nBGSAVE SCHEDULE\r\n")
        replies = _read_until(sock, b"scheduled\r\n")
    assert replies == (
        b"+Background saving started\r\n"
        b"-ERR Background save already in progress\r\n"
        b"+Background saving scheduled\r\n"
    )
    _eventually(
        lambda: (
            _persistence(client)["rdb_saves"] == 2
            and _persistence(client)["rdb_bgsave_in_progress"] == 0
        ),
        "both background saves",
    )
    after = _persistence(client)
    assert after["rdb_last_bgsave_status"] == "ok"
    assert after["rdb_changes_since_last_save"] == 0
    assert after["rdb_current_bgsave_time_sec"] == -1
    assert after["rdb_last_bgsave_time_sec"] >= 0  # type: ignore[operator]
    assert after["rdb_last_save_time"] >= before["rdb_last_save_time"]  # type: ignore[operator]
    assert after["rdb_last_save_time"] == client.lastsave().timestamp()
    assert list(snapshots.glob("*.snap"))

    with pytest.raises(Exception, match="syntax error"):
        client.execute_command("BGSAVE", "NOW")
    client.set("snap:new", "v")
    assert client.save() is True
    assert _persistence(client)["rdb_changes_since_last_save"] == 0
    assert _persistence(client)["rdb_saves"] == 3

    # Inside MULTI: BGSAVE just starts; SAVE (it would wait for the disk) is refused.
    _eventually(lambda: _persistence(client)["rdb_bgsave_in_progress"] == 0, "BGSAVE")
    with _connect(server, "resp") as sock:
        sock.sendall(b"MULTI\r\nBGSAVE\r\nSAVE\r\nSET snap:in-multi v\r\nEXEC\r\n")
        data = _read_until(sock, b"*3\r\n")
        while not data.endswith(b"\r\n+OK\r\n"):
            data += sock.recv(65536)
        replies = data.split(b"*3\r\n")[1]
    assert replies.startswith(b"+Background saving started\r\n-ERR SAVE cannot run"), replies
    assert replies.endswith(b"+OK\r\n")
    assert client.get("snap:in-multi") == "v"
    assert client.ping()
    client.close()
    assert server.stop() == 0


def test_save_runs_off_the_event_loop(server_factory: ServerFactory) -> None:
    """While one client waits for SAVE, another is answered (seen by the server's own count)."""
    server = server_factory(ports=RESP_ONLY)
    client = server.redis(decode_responses=True)
    value = "x" * 2000
    observed = False
    for attempt in range(6):
        keys = 20_000 * (attempt + 1)
        with client.pipeline(transaction=False) as pipe:
            for start in range(0, keys, 1000):
                pipe.mset({f"big:{attempt}:{i}": value for i in range(start, start + 1000)})
            pipe.execute()
        with _connect(server, "resp") as saver:
            saver.sendall(b"SAVE\r\n")
            answered = False
            while not answered:
                with client.pipeline(transaction=False) as pipe:
                    pipe.ping()
                    pipe.info("persistence")
                    pong, info = pipe.execute()
                assert pong is True
                if info["amber_snapshots_in_progress"] == 1:
                    observed = True  # PING and INFO answered while SAVE was running
                    break
                answered = bool(select.select([saver], [], [], 0)[0])
            assert _read_until(saver, b"\r\n", 60) == b"+OK\r\n"
        if observed:
            break
    assert observed, "SAVE was always too quick to see another client served meanwhile"
    _eventually(lambda: _persistence(client)["amber_snapshots_in_progress"] == 0, "SAVE")
    client.close()
    assert server.stop() == 0


# -- connections gauge ------------------------------------------------------------------


def test_connections_gauge_counts_open_connections_of_every_front_end(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    opened = {frontend: [_connect(server, frontend) for _ in range(3)] for frontend in server.ports}
    with _http(server) as http:

        def gauges() -> dict[str, float | None]:
            text = http.get("/metrics").text
            return {f: _sample(text, "amber_connections", f) for f in server.ports}

        # The scraper's own keep-alive connection is one more HTTP connection.
        wanted = {"resp": 3.0, "kvtext": 3.0, "http": 4.0}
        _eventually(lambda: gauges() == wanted, f"gauges {wanted} (last {gauges()})")
        text = http.get("/metrics").text
        assert _sample(text, "amber_requests_in_flight", "http") == 1.0  # the scrape
        for sockets in opened.values():
            for sock in sockets:
                sock.close()
        wanted = {"resp": 0.0, "kvtext": 0.0, "http": 1.0}
        _eventually(lambda: gauges() == wanted, f"gauges {wanted} (last {gauges()})")
    assert server.stop() == 0


# -- KV text: CREATE is durable ----------------------------------------------------------


def _kv(sock: socket.socket, request: bytes, marker: bytes = b"\r\n") -> bytes:
    sock.sendall(request)
    return _read_until(sock, marker)


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_a_created_empty_bucket_survives_a_restart(
    server_factory: ServerFactory, stop: str
) -> None:
    server = server_factory()
    with _connect(server, "kvtext") as kv:
        assert _kv(kv, b"CREATE empty\r\n") == b"OK\r\n"
        assert _kv(kv, b"CREATE empty\r\n") == b"OK\r\n"  # idempotent
        assert _kv(kv, b"CREATE bad/name\r\n").startswith(b"ERROR ")
        assert _kv(kv, b"CREATE emptied\r\nPUT emptied k v\r\nDELETE emptied k\r\n", b"OK\r\n" * 3)
    if stop == "sigkill":
        server.kill()  # the CREATE's OK came once it was durable
    else:
        assert server.stop() == 0

    restarted = server_factory(data=server.data)
    with _connect(restarted, "kvtext") as kv:
        assert _kv(kv, b"GET empty k\r\n", b"OK\r\n") == b"\r\nOK\r\n"
        assert _kv(kv, b"GET emptied k\r\n", b"OK\r\n") == b"\r\nOK\r\n"
        assert _kv(kv, b"GET never k\r\n") == b"NOT FOUND\r\n"
        assert _kv(kv, b"PUT empty k v\r\n") == b"OK\r\n"
        assert _kv(kv, b"GET empty k\r\n", b"OK\r\n") == b"v\r\nOK\r\n"
        assert _kv(kv, b"DELETE empty k\r\n") == b"OK\r\n"
    with _http(restarted) as http:
        tables = {t["name"]: t["keys"] for t in http.get("/v1/tables").json()["tables"]}
    assert tables == {"empty": 0, "emptied": 0}
    client = restarted.redis()
    assert client.dbsize() == 0  # the CREATE left no key behind
    client.close()
    assert restarted.stop() == 0
