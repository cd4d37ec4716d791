"""The ``crash`` nemesis: a single plain server on volatile files, SIGKILLed and restarted.

With ``durability="always"`` a run must come out valid (linearizable, no
acknowledged write lost) with crashes actually injected. With ``never`` the
server acknowledges writes it has not fsynced, and nothing fsyncs the log in
a short run (no segment roll, no snapshot, no clean close), so the first
crash — at the end of the 2 s warm-up, every seed — takes back every set-add
acknowledged so far: the durability checker must report them lost. That is
what the ``never`` test asserts; it does not assert which other checkers
trip (linearizability and watch usually do too, since revisions are reused).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from amber.chaos.harness import ChaosOptions, ChaosRun, run
from amber.chaos.nemesis import CRASH, KINDS, plan
from amber.chaos.single import SingleServer, ready
from amber.chaos.wire import resp_client
from amber.replication.local import free_base_port


def test_the_crash_plan_is_seeded_and_only_crashes_the_server():
    faults = plan(3, 15, [CRASH], 1)
    assert faults == plan(3, 15, [CRASH], 1)
    assert len(faults) >= 3
    assert {(f.kind, f.target) for f in faults} == {(CRASH, "server")}
    assert all(0.5 <= f.duration <= 2.0 for f in faults)
    assert plan(7, 60, KINDS, 3) == plan(7, 60, KINDS, 3)  # cluster plans are unchanged


def test_the_crash_nemesis_needs_a_single_server_and_runs_alone(tmp_path: Path):
    with pytest.raises(ValueError, match="single server"):
        ChaosOptions(tmp_path, nodes=3, nemesis=(CRASH,))
    with pytest.raises(ValueError, match="single server"):
        ChaosOptions(tmp_path, nodes=1, nemesis=(CRASH, "kill"))
    with pytest.raises(ValueError, match="durability"):
        ChaosOptions(tmp_path, nodes=1, nemesis=(CRASH,), durability="sometimes")
    assert ChaosOptions(tmp_path).nemesis == KINDS


@pytest.mark.parametrize(("durability", "kept"), [("always", True), ("never", False)])
def test_a_sigkill_of_a_volatile_server_loses_exactly_the_unsynced_writes(
    tmp_path: Path, durability: str, kept: bool
):
    server = SingleServer(
        tmp_path / "single", base_port=free_base_port(1, low=30_000, high=32_700),
        durability=durability,
    )  # fmt: skip
    node = server.nodes[0]
    try:
        server.start(node)
        client = resp_client(node)
        try:
            assert client.set("k", "v")
            assert client.get("k") == b"v"  # acknowledged and visible
        finally:
            client.close()
        server.kill(node)
        server.start(node)
        assert ready(node)
        client = resp_client(node)
        try:
            assert client.get("k") == (b"v" if kept else None)
        except redis.RedisError as exc:  # pragma: no cover - shows the server's output
            raise AssertionError("\n".join(node.output)) from exc
        finally:
            client.close()
    finally:
        server.stop_all()


def _run(out: Path, durability: str, seed: int) -> ChaosRun:
    options = ChaosOptions(
        out,
        nodes=1,
        seconds=15,
        nemesis=(CRASH,),
        clients=5,
        keys=4,
        seed=seed,
        durability=durability,
    )
    return run(options)


def test_crashes_with_durability_always_lose_nothing_acknowledged(tmp_path: Path):
    result = _run(tmp_path / "always", "always", seed=21)
    judgement = result.judgement
    assert judgement.verdict == "valid", judgement.describe() + f"\nnotes: {result.notes}"
    assert judgement.linearizability.verdict == "linearizable"
    assert result.single and result.faults_injected >= 3, result.faults
    assert {f["kind"] for f in result.faults} == {CRASH}
    assert judgement.checked_operations >= 150
    ops = judgement.operations
    assert ops["write"].get("ok", 0) > 30 and ops["read"].get("ok", 0) > 30
    assert ops["add"].get("ok", 0) > 10 and ops["read-set"] == {"ok": 1}
    assert judgement.registers.checked and judgement.sets.checked
    assert judgement.watch.events > 0


def test_crashes_with_durability_never_are_caught_losing_acknowledged_adds(tmp_path: Path):
    result = _run(tmp_path / "never", "never", seed=21)
    judgement = result.judgement
    assert result.faults_injected >= 3, result.faults
    assert judgement.verdict == "invalid", judgement.describe()
    lost = [e for problem in judgement.sets.problems for e in getattr(problem, "lost", ())]
    assert lost, judgement.describe()
