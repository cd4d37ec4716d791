"""``amber chaos --workload eventual`` end to end, and the proxies it needs.

A partition must cut eventual replication (members pull each other over
RESP) as well as Raft: the RESP pull links run through the proxies too.
The scenario run starts a real 3-member cluster (about 40 s) under kill,
pause, partition and clock-skew; it must come out valid with every kind of
fault injected and writes acknowledged on a minority side.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from amber.chaos.eventual import declare_eventual, member_state, run_eventual
from amber.chaos.harness import ChaosOptions, run
from amber.chaos.nemesis import EVENTUAL_KINDS, Fault, plan
from amber.chaos.proxy import ProxyNetwork
from amber.replication.local import LocalCluster, LocalNode, free_base_port


def test_resp_links_get_a_proxy_per_direction_cut_with_the_raft_link() -> None:
    a = LocalNode("n1", Path("/nonexistent/n1"), 30_000, 30_001, 30_002)
    b = LocalNode("n2", Path("/nonexistent/n2"), 30_010, 30_011, 30_012)
    network = ProxyNetwork(seed=1)
    try:
        network.peer_address(b, a)  # the raft link of the pair
        to_b, to_a = network.resp_address(a, b), network.resp_address(b, a)
        assert to_b != to_a and network.resp_address(a, b) == to_b  # one per direction, kept
        assert network.resp_links[("n1", "n2")].target == ("127.0.0.1", 30_010)
        assert network.partition([["n1"], ["n2"]]) == [("n1", "n2")]
        assert all(p.is_cut for p in network.resp_links.values())
        network.heal()
        assert not any(p.is_cut for p in network.resp_links.values())
    finally:
        network.close()


def test_a_partition_stops_eventual_replication_until_healed(tmp_path: Path) -> None:
    proxies = ProxyNetwork(seed=2)
    cluster = LocalCluster(
        tmp_path / "cluster",
        3,
        base_port=free_base_port(3, low=30_000, high=32_700),
        peer_address=proxies.peer_address,
        resp_peer_address=proxies.resp_address,
    )
    try:
        cluster.start_all()
        n1, n2, _ = cluster.nodes
        declare_eventual(n1)
        proxies.partition([["n1"], ["n2", "n3"]])
        spec = {"ops": [["put", "ev:cut", {"put": 1}]], "stamps": True}
        redis.Redis(port=n1.resp_port, socket_timeout=5).execute_command(
            "AMBER.TXN", json.dumps(spec)
        )
        time.sleep(1.5)  # replication polls every 20-500 ms: it would have arrived
        assert "ev:cut" not in member_state(n2)
        proxies.heal()
        deadline = time.monotonic() + 15
        while "ev:cut" not in member_state(n2):
            assert time.monotonic() < deadline, "not replicated after the heal"
            time.sleep(0.2)
    finally:
        cluster.stop_all()
        proxies.close()


#: A seed whose 28 s plan has every kind, a clock beyond the bound and a partition.
SEED = 46


def test_the_plan_of_the_scenario_has_every_kind() -> None:
    faults = plan(SEED, 28, EVENTUAL_KINDS, 3)
    assert {f.kind for f in faults} == set(EVENTUAL_KINDS)
    assert any(f.kind == "clock-skew" and f.target == "beyond" for f in faults)


@pytest.mark.slow  # ~35 s; make test keeps the 10 s kill + clock-skew round below
def test_eventual_workload_under_every_nemesis_is_valid(tmp_path: Path) -> None:
    options = ChaosOptions(
        tmp_path / "run",
        seconds=28,
        nemesis=EVENTUAL_KINDS,
        clients=5,
        keys=4,
        seed=SEED,
        workload="eventual",
    )
    result = run(options)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert result.judgement.verdict == "valid", result.judgement.describe()
    assert report["workload"] == "eventual" and report["checks"]["workload"] == "eventual"
    injected = {f["kind"] for f in result.faults if f["applied_at"] is not None and not f["error"]}
    assert injected == set(EVENTUAL_KINDS), result.faults
    assert report["minority_writes"] >= 1
    assert report["checks"]["lost_writes"]["checked"] >= 100
    assert report["checks"]["convergence"]["seconds"] is not None
    # the clock beyond the bound was refused by at least one peer (the counters of a
    # member killed later start again at 0)
    assert sum(m["refused_states"] for m in report["checks"]["members"].values()) >= 1
    # an operation fails only on a member that is down or paused (codes: "put:connect@n1")
    stopped = {n for f in result.faults if f["kind"] in ("kill", "pause") for n in f["nodes"]}
    for code in report["client_errors"]:
        error, _, node = code.partition(":")[2].partition("@")
        assert error in ("connect", "TimeoutError", "ConnectionError"), report["client_errors"]
        assert node in stopped, report["client_errors"]


def test_a_member_killed_right_after_its_clock_ran_ahead_keeps_stamping_upwards(
    tmp_path: Path,
) -> None:
    """The restart bug the checker found (tests/store/test_lww_restart.py): n3's clock 3-5 s
    ahead, set back, n3 killed at once and restarted; its next writes must still be
    stamped above the ones it acknowledged before (before the fix they were not, by
    about 3 s: "stamps grow on each member" was violated)."""
    options = ChaosOptions(
        tmp_path / "run", seconds=10, nemesis=("kill", "clock-skew"), clients=5, keys=4,
        workload="eventual",
    )  # fmt: skip
    faults = [Fault(2.0, "clock-skew", "beyond", 2.0, 5), Fault(4.2, "kill", "random", 0.3, 5)]
    result = run_eventual(options, faults=faults)
    assert [f["nodes"] for f in result.faults] == [["n3"], ["n3"]]
    judgement = result.judgement
    assert judgement.verdict == "valid", judgement.describe()
    assert judgement.to_json()["stamps_grow"]["checked"] >= 100


@pytest.mark.slow
def test_a_longer_eventual_round_is_valid(tmp_path: Path) -> None:
    options = ChaosOptions(
        tmp_path / "run", seconds=90, nemesis=EVENTUAL_KINDS, seed=11, workload="eventual"
    )
    assert run(options).judgement.verdict == "valid"
