"""``amber chaos`` end to end: short real runs under each nemesis, and the parts alone.

The scenario runs start real 3-node clusters on loopback (about 25 s each);
each must come out valid, with faults actually injected and operations
actually checked. A doctored copy of a real run's history must come out
invalid, so a pass means something.
"""

from __future__ import annotations

import itertools
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from amber.chaos.harness import ChaosOptions, ChaosRun, run
from amber.chaos.history import Record, read_history, write_history
from amber.chaos.nemesis import KINDS, plan
from amber.chaos.proxy import LinkProxy, ProxyNetwork
from amber.chaos.wire import outcome
from amber.cli import app
from amber.replication.local import LocalNode

# -- the parts ---------------------------------------------------------------------------


@pytest.fixture
def echo_server() -> Iterator[int]:
    """A TCP server on loopback that echoes every byte back; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            connections.append(conn)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    def echo(conn: socket.socket) -> None:
        try:
            while data := conn.recv(4096):
                conn.sendall(data)
        except OSError:
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
        listener.close()
        for conn in connections:
            conn.close()
        thread.join(5)


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(payload)
        received = b""
        while len(received) < len(payload):
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        return received


def test_a_link_proxy_forwards_until_cut_and_again_after_heal(echo_server: int):
    proxy = LinkProxy("test", ("127.0.0.1", echo_server), _free_port())
    try:
        assert _roundtrip(proxy.port, b"hello" * 1000) == b"hello" * 1000
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
        held.sendall(b"x")
        assert held.recv(1) == b"x"
        proxy.cut()
        assert held.recv(1) == b""  # the open connection was dropped
        held.close()
        assert _roundtrip(proxy.port, b"nothing") == b""  # new ones are closed at once
        proxy.heal()
        assert _roundtrip(proxy.port, b"back") == b"back"
        assert proxy.connections == 3
    finally:
        proxy.close()


def _free_port() -> int:
    for port in range(21_000, 29_000, 7):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free port")


def test_only_the_dialling_side_of_a_link_is_given_a_proxy(tmp_path: Path):
    low = LocalNode("n1", tmp_path / "n1", 30_000, 30_001, 30_002)
    high = LocalNode("n2", tmp_path / "n2", 30_010, 30_011, 30_012)
    network = ProxyNetwork(seed=1)
    try:
        # n2's address is greater, so n2 dials n1: n2 gets the proxy, n1 the real address.
        via = network.peer_address(high, low)
        assert via != low.raft_address and via < high.raft_address
        assert network.peer_address(low, high) == high.raft_address
        assert network.peer_address(high, low) == via  # one proxy per link
        assert list(network.links) == [frozenset({"n1", "n2"})]
        assert network.partition([["n1"], ["n2"]]) == [("n1", "n2")]
        assert network.links[frozenset({"n1", "n2"})].is_cut
        network.heal()
        assert not network.links[frozenset({"n1", "n2"})].is_cut
    finally:
        network.close()


def test_the_fault_plan_is_a_function_of_the_seed():
    first = plan(7, 60, KINDS, 3)
    assert first == plan(7, 60, KINDS, 3)
    assert first != plan(8, 60, KINDS, 3)
    assert {f.kind for f in first} == set(KINDS)
    assert all(0 < f.start < 60 and f.duration > 0 for f in first)
    assert all(a.start + a.duration < b.start for a, b in itertools.pairwise(first))
    assert {f.kind for f in plan(1, 60, ["pause"], 3)} == {"pause"}
    with pytest.raises(ValueError, match="unknown nemesis"):
        plan(1, 60, ["flood"], 3)


def test_errors_map_to_jepsen_completions():
    refused = redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    assert outcome("write", redis.ResponseError("TRYAGAIN no leader")) == "fail"
    assert outcome("cas", redis.ResponseError("CONDITION r:k1 value")) == "fail"
    assert outcome("write", refused) == "fail"  # never sent
    assert outcome("write", redis.ResponseError("UNKNOWN may be applied")) == "info"
    assert outcome("cas", redis.TimeoutError("Timeout reading from socket")) == "info"
    assert outcome("add", redis.ConnectionError("Connection closed by server.")) == "info"
    assert outcome("read", redis.TimeoutError("Timeout reading from socket")) == "fail"


# -- real runs ---------------------------------------------------------------------------


def _run(out: Path, nemesis: str, seed: int, seconds: float = 20.0) -> ChaosRun:
    options = ChaosOptions(
        out, nodes=3, seconds=seconds, nemesis=(nemesis,), clients=5, keys=4, seed=seed
    )
    return run(options)


def _assert_valid(result: ChaosRun, nemesis: str) -> None:
    judgement = result.judgement
    assert judgement.verdict == "valid", judgement.describe() + f"\nnotes: {result.notes}"
    assert judgement.linearizability.verdict == "linearizable"
    assert result.faults_injected >= 2, result.faults
    assert {f["kind"] for f in result.faults} == {nemesis}
    assert judgement.checked_operations >= 200
    ok = judgement.operations
    assert ok["write"].get("ok", 0) > 50 and ok["read"].get("ok", 0) > 50
    assert ok["add"].get("ok", 0) > 10 and ok["read-set"] == {"ok": 1}
    assert judgement.watch.events > 0 and not judgement.skipped_streams
    for name in ("history.jsonl", "report.json", "watch.json", "timeline.png"):
        assert (result.options.out / name).stat().st_size > 0
    report = json.loads((result.options.out / "report.json").read_text())
    assert report["verdict"] == "valid" and report["faults_injected"] == result.faults_injected


@pytest.fixture(scope="module")
def kill_run(tmp_path_factory: pytest.TempPathFactory) -> ChaosRun:
    return _run(tmp_path_factory.mktemp("chaos") / "kill", "kill", seed=11)


def test_kill_and_restart_scenario_is_linearizable(kill_run: ChaosRun):
    _assert_valid(kill_run, "kill")
    assert any(f["target"] == "leader" for f in kill_run.faults) or len(kill_run.faults) >= 3


def test_pause_scenario_is_linearizable(tmp_path: Path):
    _assert_valid(_run(tmp_path / "pause", "pause", seed=12), "pause")


def test_partition_scenario_is_linearizable(tmp_path: Path):
    result = _run(tmp_path / "partition", "partition", seed=13)
    _assert_valid(result, "partition")
    assert all(f["nodes"] for f in result.faults)  # every partition cut some link


@pytest.mark.slow
def test_membership_scenario_is_linearizable(tmp_path: Path):
    _assert_valid(_run(tmp_path / "membership", "membership", seed=14, seconds=25), "membership")


def _stale_read(records: list[Record]) -> list[Record]:
    """A read, after a write w2 returned, of the value of a write w1 that returned before w2
    began: no linearization can place it."""
    pending: dict[int, Record] = {}
    writes: list[tuple[Record, Record]] = []
    for record in records:
        if record.type == "invoke":
            pending[record.process] = record
        elif record.type == "ok" and record.f in ("write", "cas"):
            writes.append((pending[record.process], record))
    for w1_call, w1_ret in writes:
        for w2_call, w2_ret in writes:
            if w2_call.key == w1_call.key and w2_call.time > w1_ret.time:
                old = w1_call.value if w1_call.f == "write" else w1_call.value[1]
                at = w2_ret.time + 0.000_001
                return [
                    Record(999, "invoke", "read", w1_call.key, None, at),
                    Record(999, "ok", "read", w1_call.key, old, at + 0.000_001),
                ]
    raise AssertionError("the run has no two sequential writes to one key")


def test_the_harness_finds_a_stale_read_planted_in_a_real_history(
    kill_run: ChaosRun, tmp_path: Path
):
    doctored = tmp_path / "doctored"
    shutil.copytree(kill_run.options.out, doctored, ignore=shutil.ignore_patterns("cluster"))
    cli = CliRunner()
    clean = cli.invoke(app, ["chaos", "--out", str(doctored), "--recheck"])
    assert clean.exit_code == 0, clean.output
    records = read_history(doctored / "history.jsonl")
    write_history(doctored / "history.jsonl", records + _stale_read(records))
    found = cli.invoke(app, ["chaos", "--out", str(doctored), "--recheck"])
    assert found.exit_code == 1, found.output
    assert "not linearizable" in found.output and "verdict: INVALID" in found.output


def test_a_lost_acknowledged_set_add_is_reported(kill_run: ChaosRun, tmp_path: Path):
    doctored = tmp_path / "lost"
    shutil.copytree(kill_run.options.out, doctored, ignore=shutil.ignore_patterns("cluster"))
    records = read_history(doctored / "history.jsonl")
    final = next(r for r in reversed(records) if r.f == "read-set" and r.type == "ok")
    acked = next(r.value for r in records if r.f == "add" and r.type == "ok")
    kept = [e for e in final.value if e != acked]
    lost = Record(final.process, "ok", "read-set", final.key, kept, final.time)
    write_history(doctored / "history.jsonl", [lost if r is final else r for r in records])
    found = CliRunner().invoke(app, ["chaos", "--out", str(doctored), "--recheck"])
    assert found.exit_code == 1, found.output
    assert "lost" in found.output


def test_the_cli_runs_a_short_round_and_exits_by_verdict(tmp_path: Path):
    started = time.monotonic()
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            *("chaos", "--out", str(out), "--seconds", "8", "--nemesis", "kill"),
            *("--clients", "3", "--keys", "2", "--seed", "5"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "verdict: VALID" in result.output and "faults injected" in result.output
    assert time.monotonic() - started < 60
    assert json.loads((out / "report.json").read_text())["options"]["seed"] == 5
