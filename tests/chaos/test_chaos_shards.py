"""``amber chaos --shards``: the parts a sharded run adds, and a short real run.

The real run starts two one-member Raft groups (the quickest sharded
cluster to start), moves slot ranges holding registers back and forth and
kills members while clients go on; it must come out valid with keys
actually moved. The per-group watch check is tested on hand-made streams,
including a key that moved between groups and a write lost in a move.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from typer.testing import CliRunner

from amber.chaos.harness import ChaosOptions, run
from amber.chaos.nemesis import RESHARD, SHARDED_KINDS, plan
from amber.chaos.watchcheck import check_groups
from amber.chaos.wire import error_code, outcome
from amber.cli import app

# -- the parts ---------------------------------------------------------------------------


def test_cluster_redirects_and_retries_are_certainly_not_applied():
    # redis-py turns these replies into classes and cuts the code off the message.
    moved = redis.exceptions.MovedError("3322 127.0.0.1:7000")
    again = redis.exceptions.TryAgainError("slot 3322 is moving to another group; retry")
    assert (error_code(moved), error_code(again)) == ("MOVED", "TRYAGAIN")
    assert outcome("write", moved) == outcome("cas", again) == "fail"


def test_sharded_options_refuse_what_does_not_apply(tmp_path: Path):
    with pytest.raises(ValueError, match="kill, pause, partition and reshard"):
        ChaosOptions(tmp_path, shards=2, nemesis=("membership",))
    with pytest.raises(ValueError, match="needs --shards"):
        ChaosOptions(tmp_path, nemesis=(RESHARD,))
    assert ChaosOptions(tmp_path, shards=3, nemesis=SHARDED_KINDS).shards == 3
    assert {f.kind for f in plan(2, 20, ("reshard", "kill"), 1)} == {"reshard", "kill"}


def _event(revision: int, key: str, value: str) -> dict[str, object]:
    return {"revision": revision, "table": "r", "key": key, "type": "put", "value": value}


#: k1 lives in g1 throughout; k2 starts in g1 and moves to g2 (the copy is a put at g2).
_G1 = [_event(1, "k1", "1"), _event(2, "k2", "a"), _event(3, "k1", "2")]
_G2 = [_event(1, "k3", "x"), _event(2, "k2", "a"), _event(3, "k2", "b")]
_GROUPS = {"n1": "g1", "n2": "g1", "n3": "g2"}
_OWNERS = {"k1": "g1", "k2": "g2", "k3": "g2"}


def test_watch_streams_are_checked_per_group_and_follow_moved_keys():
    streams = {"n1": _G1, "n2": _G1[:2], "n3": _G2}
    final = {"k1": "2", "k2": "b", "k3": "x"}
    result = check_groups(streams, final, _GROUPS, _OWNERS, table="r")
    assert result.valid, result.describe()
    assert result.ranges == {"n1": (1, 3), "n2": (1, 2), "n3": (1, 3)}


def test_a_write_lost_in_a_move_or_a_divergent_member_is_found():
    # g2 never got k2's last value: its replay disagrees with the final state.
    lost = check_groups(
        {"n1": _G1, "n3": _G2[:2]}, {"k1": "2", "k2": "b", "k3": "x"}, _GROUPS, _OWNERS, table="r"
    )
    assert [p.kind for p in lost.problems] == ["replay"]
    assert "group g2" in lost.problems[0].message
    # Revisions are per group: the same revision on two groups is no divergence,
    # on two members of one group it is.
    other = [_event(1, "k1", "1"), _event(2, "k2", "a"), _event(3, "k1", "9")]
    split = check_groups(
        {"n1": _G1, "n2": other, "n3": _G2},
        {"k1": "2", "k2": "b", "k3": "x"},
        _GROUPS,
        _OWNERS,
        table="r",
    )
    assert {p.kind for p in split.problems} == {"divergence"}
    # A final-state key no group claims is reported.
    orphan = check_groups(
        {"n1": _G1, "n3": _G2},
        {"k1": "2", "k2": "b", "k3": "x", "k4": "?"},
        _GROUPS,
        _OWNERS,
        table="r",
    )
    assert any("no group serves" in p.message for p in orphan.problems)


# -- a real run --------------------------------------------------------------------------


def test_a_reshard_under_load_with_kills_passes_the_checkers(tmp_path: Path):
    """2 groups of 1 member, 20 s (seed 5): a reshard; one moving the range back that kills
    a group's only member after its first step (so it fails, and is repaired); a kill;
    maybe another reshard (if the repair left time for it)."""
    out = tmp_path / "shards"
    options = ChaosOptions(
        out,
        nodes=1,
        shards=2,
        seconds=20,
        nemesis=(RESHARD, "kill"),
        clients=5,
        keys=4,
        seed=5,
    )
    result = run(options)
    judgement = result.judgement
    assert judgement.verdict == "valid", judgement.describe() + f"\nnotes: {result.notes}"
    assert {f["kind"] for f in result.faults} == {RESHARD, "kill"}
    reshards = [f for f in result.faults if f["kind"] == RESHARD]
    assert len(reshards) >= 2 and "killed" in reshards[1]["detail"], reshards
    first, back = (f["move"] for f in reshards[:2])
    assert (first["first"], first["last"]) == (back["first"], back["last"])  # back and forth
    assert any(m["keys"] and m["copied"] > 0 for m in result.reshards), reshards
    assert not any("frozen" in n or "repair failed" in n for n in result.notes), result.notes
    assert result.redirects > 0
    assert all(result.shards[g]["registers_at_start"] for g in ("g1", "g2"))
    ok = judgement.operations
    assert ok["write"].get("ok", 0) > 50 and ok["read"].get("ok", 0) > 50
    assert ok["add"].get("ok", 0) > 10 and ok["read-set"] == {"ok": 1}
    # Each node's own group's stream, and every group's part of each node's merged watch.
    merged = {f"{n}+merged/{g}" for n in ("n1", "n2") for g in ("g1", "g2")}
    assert set(judgement.watch.ranges) == {"n1", "n2"} | merged
    assert judgement.watch.events > 0 and not judgement.skipped_streams
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "valid" and report["reshards"] == result.reshards
    again = CliRunner().invoke(app, ["chaos", "--out", str(out), "--recheck"])
    assert again.exit_code == 0, again.output


@pytest.mark.slow
def test_three_groups_of_three_under_every_sharded_nemesis(tmp_path: Path):
    """3 groups of 3, 40 s of reshard, kill, pause and partition (about 60 s)."""
    options = ChaosOptions(
        tmp_path / "3x3", nodes=3, shards=3, seconds=40, nemesis=SHARDED_KINDS, seed=8
    )
    result = run(options)
    judgement = result.judgement
    assert judgement.verdict == "valid", judgement.describe() + f"\nnotes: {result.notes}"
    assert result.faults_injected >= 5 and result.reshards, result.faults
    assert sum(1 for g in result.shards.values() if g["registers_at_start"]) >= 2
