"""The eventual workload's checkers on hand-made histories: each one can fail.

A history here is what the eventual clients record (:mod:`amber.chaos.eventual`);
the final state is what every member is read to hold: ``{key: [document or
None, {"base": stamp, "fields": {...}}]}``.
"""

from __future__ import annotations

from typing import Any

from amber.chaos.history import Function, Record, RecordType
from amber.chaos.lwwcheck import check_monotonic, judge_eventual, parse_stamp, writes_of


class H:
    """Builds a history one call at a time (each call on its own process, in order)."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.t = 0.0

    def call(
        self,
        f: Function,
        key: str,
        spec: dict[str, Any],
        outcome: RecordType = "ok",
        result: Any = None,
    ) -> None:
        process = len(self.records)
        self.t += 1
        self.records.append(Record(process, "invoke", f, key, spec, self.t))
        self.t += 1
        if outcome != "invoke":
            self.records.append(Record(process, outcome, f, key, result, self.t))

    def put(self, key: str, value: int, stamp: str, outcome: RecordType = "ok") -> None:
        self.call("put", key, {"node": "n1", "value": value}, outcome, self._done(stamp, outcome))

    def merge(
        self, key: str, field: str, value: int, stamp: str, outcome: RecordType = "ok"
    ) -> None:
        spec = {"node": "n2", "field": field, "value": value}
        self.call("merge", key, spec, outcome, self._done(stamp, outcome))

    def delete(self, key: str, stamp: str, outcome: RecordType = "ok") -> None:
        self.call("delete", key, {"node": "n3"}, outcome, self._done(stamp, outcome))

    def read(self, key: str, doc: Any) -> None:
        self.call("read", key, {"node": "n1"}, "ok", doc)

    @staticmethod
    def _done(stamp: str, outcome: RecordType) -> Any:
        return {"stamp": stamp} if outcome == "ok" else None


def stamps(base: str, **fields: str) -> dict[str, Any]:
    return {
        "base": list(parse_stamp(base)),
        "fields": {f: list(parse_stamp(s)) for f, s in fields.items()},
    }


def everywhere(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict.fromkeys(("n1", "n2", "n3"), state)


def test_a_good_history_is_valid() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.merge("ev:k0", "a", 2, "101.0@n2")
    h.read("ev:k0", {"put": 1, "a": 2})
    h.put("ev:k1", 3, "102.0@n1")
    h.put("ev:k1", 4, "104.0@n1")  # supersedes 3
    h.merge("ev:k1", "b", 5, "103.0@n2")  # older than the put of 4: reset by it
    h.delete("ev:k2", "105.0@n3")
    state = {
        "ev:k0": [{"put": 1, "a": 2}, stamps("100.0@n1", a="101.0@n2")],
        "ev:k1": [{"put": 4}, stamps("104.0@n1")],
        "ev:k2": [None, stamps("105.0@n3")],
    }
    judgement = judge_eventual(h.records, everywhere(state), 1.5)
    assert judgement.verdict == "valid", judgement.describe()
    assert judgement.lost.checked == 6 and judgement.convergence.details["seconds"] == 1.5


def test_a_lost_put_is_found() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.put("ev:k0", 2, "105.0@n2")  # acknowledged, newer, and gone
    state = {"ev:k0": [{"put": 1}, stamps("100.0@n1")]}
    judgement = judge_eventual(h.records, everywhere(state), 1.0)
    assert judgement.verdict == "invalid"
    assert not judgement.lost.valid and "LOST" in judgement.lost.problems[0]
    assert "put=2" in judgement.lost.problems[0]


def test_a_lost_merge_and_a_lost_delete_are_found() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.merge("ev:k0", "a", 7, "101.0@n2")
    h.merge("ev:k0", "a", 8, "102.0@n2")  # the newer field value: lost below
    h.put("ev:k1", 3, "100.0@n1")
    h.delete("ev:k1", "104.0@n3")  # newer than the put that stays: lost
    state = {
        "ev:k0": [{"put": 1, "a": 7}, stamps("100.0@n1", a="101.0@n2")],
        "ev:k1": [{"put": 3}, stamps("100.0@n1")],
    }
    lost = judge_eventual(h.records, everywhere(state), 1.0).lost
    assert not lost.valid and len(lost.problems) == 2
    assert any("a=8" in p for p in lost.problems)
    assert any("delete ev:k1" in p for p in lost.problems)


def test_a_put_lost_to_a_collected_tombstone_is_found_and_a_deleted_one_is_not() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.delete("ev:k0", "101.0@n3")  # then every member forgot the tombstone
    h.put("ev:k1", 2, "100.0@n1")
    h.delete("ev:k1", "99.0@n3")
    judgement = judge_eventual(h.records, everywhere({}), 1.0)  # k1 vanished: its put is lost
    assert [p for p in judgement.lost.problems if "ev:k0" in p] == []
    assert any("put ev:k1" in p for p in judgement.lost.problems)


def test_an_unacknowledged_write_may_be_the_winner_with_its_learnt_stamp() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.put("ev:k0", 9, "", outcome="info")  # timed out: applied after all, at 150
    state = {"ev:k0": [{"put": 9}, stamps("150.0@n2")]}
    assert judge_eventual(h.records, everywhere(state), 1.0).verdict == "valid"
    # ... but not when its learnt stamp is older than the acknowledged put it hides
    state = {"ev:k0": [{"put": 9}, stamps("90.0@n2")]}
    assert not judge_eventual(h.records, everywhere(state), 1.0).lost.valid


def test_a_value_from_nowhere_is_found_in_reads_and_in_the_final_state() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.read("ev:k0", {"put": 1, "z": 3})  # field z was never merged
    h.read("ev:k1", {"put": 1})  # 1 was put on k0, not k1
    h.read("ev:k0", {"put": 5})  # read before the put of 5 was invoked
    h.put("ev:k0", 5, "101.0@n1")
    h.put("ev:k0", 6, "", outcome="fail")  # certainly not applied
    state = {"ev:k0": [{"put": 6}, stamps("102.0@n1")]}
    origin = judge_eventual(h.records, everywhere(state), 1.0).origin
    assert not origin.valid
    assert len([p for p in origin.problems if "never written" in p]) == 4


def test_a_final_stamp_that_is_not_its_writers_is_found() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    state = {"ev:k0": [{"put": 1}, stamps("200.0@n1")]}
    origin = judge_eventual(h.records, everywhere(state), 1.0).origin
    assert not origin.valid and "stamped" in origin.problems[0]


def test_divergence_or_slow_convergence_is_found() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.put("ev:k0", 2, "101.0@n2")
    old = {"ev:k0": [{"put": 1}, stamps("100.0@n1")]}
    new = {"ev:k0": [{"put": 2}, stamps("101.0@n2")]}
    split = judge_eventual(h.records, {"n1": new, "n2": new, "n3": old}, 1.0)
    assert not split.convergence.valid and "n3 has" in split.convergence.problems[0]
    assert not judge_eventual(h.records, everywhere(new), 45.0, bound=30).convergence.valid
    assert not judge_eventual(h.records, everywhere(new), None).convergence.valid
    # a tombstone one member has collected and another not yet is no divergence
    gone = {"ev:k1": [None, stamps("99.0@n3")]}
    assert judge_eventual(h.records, {"n1": new | gone, "n2": new}, 1.0).convergence.valid


def test_writes_are_paired_with_their_completions() -> None:
    h = H()
    h.put("ev:k0", 1, "100.0@n1")
    h.merge("ev:k0", "a", 2, "", outcome="info")
    h.call("delete", "ev:k0", {"node": "n3"}, outcome="invoke")  # never completed
    writes = writes_of(h.records)
    assert [(w.f, w.status, w.register) for w in writes] == [
        ("put", "ok", "put"),
        ("merge", "info", "a"),
        ("delete", "info", "put"),
    ]
    assert writes[0].stamp == (100, 0, "n1") and writes[1].stamp is None


def test_a_member_stamping_a_later_write_below_an_earlier_one_is_found() -> None:
    """What a clock that forgot its stamps across a restart did (tests/store/test_lww_restart.py):
    the later write loses, which the lost-write check alone accepts as superseded."""
    h = H()
    h.put("ev:k0", 1, "5000.0@n1")  # n1's clock was ahead; then n1 restarted
    h.put("ev:k0", 2, "1000.0@n1")  # acknowledged after the first, stamped below it
    state = {"ev:k0": [{"put": 1}, stamps("5000.0@n1")]}
    judgement = judge_eventual(h.records, everywhere(state), 1.0)
    assert judgement.lost.valid  # superseded by a greater stamp: fine by itself
    assert not judgement.monotonic.valid and judgement.verdict == "invalid"
    assert "put=2" in judgement.monotonic.problems[0]
    # concurrent writes on one member may be stamped in either order
    c = H()
    c.records = [
        Record(0, "invoke", "put", "ev:k0", {"node": "n1", "value": 1}, 1.0),
        Record(1, "invoke", "put", "ev:k0", {"node": "n1", "value": 2}, 1.1),
        Record(1, "ok", "put", "ev:k0", {"stamp": "10.0@n1"}, 1.2),
        Record(0, "ok", "put", "ev:k0", {"stamp": "11.0@n1"}, 1.3),
    ]
    assert check_monotonic(writes_of(c.records)).valid
