"""The watch checker: gap-free, identical across nodes, replays to the final state."""

from __future__ import annotations

from typing import Any

import pytest

from amber.chaos.watchcheck import check_watch
from amber.errors import InvalidArgument


def ev(revision: int, key: str, kind: str = "put", value: Any = None, table: str = "t") -> Any:
    return {"revision": revision, "table": table, "key": key, "type": kind, "value": value}


STREAM = [
    ev(1, "a", value=1),
    ev(2, "b", value={"x": 1, "y": 2}),
    ev(3, "a", value=2),  # one transaction: two events at revision 3
    ev(3, "c", value="c"),
    ev(4, "b", "merge", {"y": None, "z": [3]}),
    ev(5, "c", "delete"),
    ev(6, "d", value=4),
    ev(7, "d", "expire"),
]
FINAL = {"a": 2, "b": {"x": 1, "z": [3]}}


def kinds(result: Any) -> list[str]:
    return [p.kind for p in result.problems]


def test_consistent_streams_pass() -> None:
    result = check_watch({"n1": STREAM, "n2": STREAM[2:], "n3": STREAM[:5]}, FINAL)
    assert result.valid, result.describe()
    assert result.ranges == {"n1": (1, 7), "n2": (3, 7), "n3": (1, 4)}
    assert result.events == 8 + 6 + 5
    assert "watch: ok" in result.describe()
    assert result.to_json()["ranges"]["n2"] == [3, 7]


def test_no_events_and_empty_state_pass() -> None:
    assert check_watch({"n1": []}, {}).valid
    assert kinds(check_watch({"n1": []}, {"a": 1})) == ["replay"]


def test_a_missing_revision_is_a_gap() -> None:
    stream = [e for e in STREAM if e["revision"] not in (4, 5)]
    result = check_watch({"n1": stream, "n2": STREAM}, FINAL)
    assert kinds(result) == ["gap"]
    assert result.problems[0].node == "n1"
    assert "revisions 4..5 missing" in result.describe()


def test_revisions_out_of_order_are_reported() -> None:
    stream = [STREAM[0], STREAM[2], STREAM[1], STREAM[3], *STREAM[4:]]
    assert "order" in kinds(check_watch({"n1": stream}, FINAL))
    # A transaction's events split by another revision.
    stream = [STREAM[0], STREAM[1], STREAM[2], ev(4, "q"), STREAM[3]]
    assert "order" in kinds(check_watch({"n1": stream}, {}))


def test_nodes_that_disagree_on_a_revision_diverge() -> None:
    other = [dict(e) for e in STREAM]
    other[1]["value"] = {"x": 1, "y": 3}
    other[6]["value"] = 5
    result = check_watch({"n1": STREAM, "n2": other}, FINAL)
    assert kinds(result) == ["divergence", "divergence"]
    assert "revision 2 is" in result.problems[0].message
    assert "on node n1" in result.problems[0].message
    assert "differs from node n1 on 2 revisions" in result.problems[1].message


def test_event_order_inside_a_transaction_matters() -> None:
    other = [*STREAM[:2], STREAM[3], STREAM[2], *STREAM[4:]]
    assert kinds(check_watch({"n1": STREAM, "n2": other}, FINAL)) == ["divergence"]


def test_revisions_no_node_saw_break_the_replay() -> None:
    result = check_watch({"n1": STREAM[:2], "n2": STREAM[5:]}, FINAL)
    assert "coverage" in kinds(result)
    assert "no node saw revisions 3..4" in result.describe()
    late = check_watch({"n1": STREAM[2:]}, FINAL)
    assert "no node saw revisions 1..2" in late.describe()
    assert check_watch({"n1": STREAM[2:]}, FINAL, first_revision=3).problems[0].kind == "replay"


def test_a_replay_that_misses_the_final_state_is_reported() -> None:
    result = check_watch({"n1": STREAM}, {"a": 2, "b": {"x": 1, "y": 2, "z": [3]}, "e": 1})
    assert kinds(result) == ["replay", "replay"]
    text = result.describe()
    assert "final state has keys the replay lacks: ['e']" in text
    assert "key 'b': replay gives" in text
    assert kinds(check_watch({"n1": STREAM}, {"a": 2})) == ["replay"]


def test_merge_values_can_be_results_instead_of_patches() -> None:
    stream = [ev(1, "b", value={"x": 1, "y": 2}), ev(2, "b", "merge", {"x": 1})]
    assert check_watch({"n": stream}, {"b": {"x": 1}}, merge_values="result").valid
    assert not check_watch({"n": stream}, {"b": {"x": 1}}).valid


def test_several_tables_need_a_table_to_replay() -> None:
    stream = [ev(1, "a", value=1), ev(2, "a", value=2, table="u")]
    with pytest.raises(InvalidArgument, match="pass table="):
        check_watch({"n": stream}, {"a": 1})
    assert check_watch({"n": stream}, {"a": 1}, table="t").valid
    assert check_watch({"n": stream}, {"a": 2}, table="u").valid


def test_malformed_events_are_rejected() -> None:
    with pytest.raises(InvalidArgument, match="node n event 0"):
        check_watch({"n": [{"revision": 1}]}, {})
    with pytest.raises(InvalidArgument, match="bad revision or type"):
        check_watch({"n": [ev(1, "a", "upsert")]}, {})


def test_many_gaps_are_summarised() -> None:
    stream = [ev(r, "a", value=r) for r in range(1, 40, 2)]
    result = check_watch({"n": stream}, {"a": 39})
    gaps = [p for p in result.problems if p.kind == "gap"]
    assert len(gaps) == 6
    assert gaps[-1].message == "... 14 more"
