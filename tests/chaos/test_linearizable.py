"""The linearizability checker on hand-made, simulated and generated histories."""

from __future__ import annotations

import time
from typing import Any

import pytest
from chaos_support import history, op, simulate
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.chaos.history import Function, Operation, Record, RecordType, pair
from amber.chaos.linearizable import check, check_history


def verdict(records: list[Record]) -> str:
    return check_history(records, budget=10).verdict


# -- the classic examples ------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    result = check_history([])
    assert result.verdict == "linearizable"
    assert result.operations == 0


def test_read_of_a_never_written_key_is_null() -> None:
    assert verdict(history(op(0, "read", "k", None, 0, 1, output=None))) == "linearizable"
    assert verdict(history(op(0, "read", "k", None, 0, 1, output=3))) == "not linearizable"


def test_stale_read_after_a_write_completed_is_not_linearizable() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(0, "write", "k", 2, 2, 3),
        op(1, "read", "k", None, 4, 5, output=1),
    )
    result = check_history(records)
    assert result.verdict == "not linearizable"
    assert not result.valid
    (violation,) = result.violations
    assert violation.key == "k"
    assert violation.stuck.f == "read"
    assert violation.stuck.output == 1
    assert violation.state == 2
    assert [o.value for o in violation.linearized] == [1, 2]
    text = result.describe()
    assert "not linearizable" in text
    assert "reads 1, register holds 2" in text


def test_read_during_the_write_may_see_either_value() -> None:
    for seen in (1, 2):
        records = history(
            op(0, "write", "k", 1, 0, 1),
            op(0, "write", "k", 2, 2, 5),
            op(1, "read", "k", None, 3, 4, output=seen),
        )
        assert verdict(records) == "linearizable"


def test_concurrent_writes_allow_both_orders() -> None:
    for last in (1, 2):
        records = history(
            op(0, "write", "k", 1, 0, 10),
            op(1, "write", "k", 2, 1, 9),
            op(2, "read", "k", None, 11, 12, output=last),
        )
        assert verdict(records) == "linearizable"


def test_reads_during_concurrent_writes_may_observe_each_order() -> None:
    # w2, read 2, w1, read 1: each read overlaps both writes.
    records = history(
        op(0, "write", "k", 1, 0, 10),
        op(1, "write", "k", 2, 1, 9),
        op(2, "read", "k", None, 2, 8, output=2),
        op(3, "read", "k", None, 3, 11, output=1),
    )
    assert verdict(records) == "linearizable"


def test_after_concurrent_writes_the_order_is_fixed() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 10),
        op(1, "write", "k", 2, 1, 9),
        op(2, "read", "k", None, 11, 12, output=1),
        op(2, "read", "k", None, 13, 14, output=2),
    )
    assert verdict(records) == "not linearizable"


def test_lost_cas_is_not_linearizable() -> None:
    # Two cas with the same expected value cannot both succeed.
    records = history(
        op(0, "write", "k", 0, 0, 1),
        op(1, "cas", "k", [0, 1], 2, 5),
        op(2, "cas", "k", [0, 2], 3, 6),
    )
    result = check_history(records)
    assert result.verdict == "not linearizable"
    assert "expects 0, register holds" in result.describe()


def test_concurrent_cas_where_one_fails_is_linearizable() -> None:
    records = history(
        op(0, "write", "k", 0, 0, 1),
        op(1, "cas", "k", [0, 1], 2, 5),
        op(2, "cas", "k", [0, 2], 3, 6, outcome="fail"),
        op(2, "read", "k", None, 7, 8, output=1),
    )
    assert verdict(records) == "linearizable"


def test_cas_chain_and_wrong_expectation() -> None:
    good = history(
        op(0, "write", "k", "a", 0, 1),
        op(0, "cas", "k", ["a", "b"], 2, 3),
        op(0, "cas", "k", ["b", "c"], 4, 5),
        op(1, "read", "k", None, 6, 7, output="c"),
    )
    assert verdict(good) == "linearizable"
    bad = history(
        op(0, "write", "k", "a", 0, 1),
        op(0, "cas", "k", ["b", "c"], 2, 3),
    )
    assert verdict(bad) == "not linearizable"


@pytest.mark.parametrize("seen", [1, 2])
def test_info_write_may_or_may_not_have_happened(seen: int) -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "write", "k", 2, 2, 3, outcome="info"),
        op(2, "read", "k", None, 10, 11, output=seen),
    )
    assert verdict(records) == "linearizable"


def test_info_write_takes_effect_once_and_stays() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "write", "k", 2, 2, 3, outcome="info"),
        op(2, "read", "k", None, 10, 11, output=2),
        op(2, "read", "k", None, 12, 13, output=1),
    )
    assert verdict(records) == "not linearizable"


def test_info_write_may_take_effect_long_after_its_timeout() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "write", "k", 2, 2, 3, outcome="info"),
        op(2, "read", "k", None, 10, 11, output=1),
        op(2, "read", "k", None, 12, 13, output=2),
    )
    assert verdict(records) == "linearizable"


def test_never_completed_operation_counts_as_info() -> None:
    records = history(
        op(1, "cas", "k", [None, 5], 2, None),
        op(2, "read", "k", None, 10, 11, output=5),
    )
    assert verdict(records) == "linearizable"
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "cas", "k", [None, 5], 2, None),
        op(2, "read", "k", None, 10, 11, output=5),
    )
    assert verdict(records) == "not linearizable"


def test_failed_and_info_reads_constrain_nothing() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "read", "k", None, 2, 3, outcome="fail", output=7),
        op(1, "read", "k", None, 4, 5, outcome="info"),
    )
    result = check_history(records)
    assert result.verdict == "linearizable"
    assert result.operations == 1


def test_touching_intervals_count_as_concurrent() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "read", "k", None, 1, 2, output=None),
    )
    assert verdict(records) == "linearizable"


def test_values_are_compared_as_json_documents() -> None:
    records = history(
        op(0, "write", "k", {"a": 1, "b": [1, 2]}, 0, 1),
        op(1, "read", "k", None, 2, 3, output={"b": [1, 2], "a": 1}),
        op(1, "cas", "k", [{"b": [1, 2], "a": 1}, {"c": None}], 4, 5),
        op(1, "read", "k", None, 6, 7, output={"c": None}),
    )
    assert verdict(records) == "linearizable"


def test_keys_are_checked_independently() -> None:
    records = history(
        op(0, "write", "a", 1, 0, 1),
        op(0, "read", "a", None, 2, 3, output=1),
        op(1, "write", "b", 1, 0, 1),
        op(1, "read", "b", None, 2, 3, output=2),
        op(2, "add", "s", 1, 0, 1),
    )
    result = check_history(records)
    assert result.verdict == "not linearizable"
    assert result.keys["a"].verdict == "linearizable"
    assert result.keys["b"].verdict == "not linearizable"
    assert "s" not in result.keys
    assert result.to_json()["keys"]["b"]["violation"]["key"] == "b"


# -- the time budget -----------------------------------------------------------


def hard_history(writers: int = 40) -> list[Record]:
    """Many concurrent writes then an impossible read: the search must try every subset."""
    calls = [op(p, "write", "k", p, 0, 100) for p in range(writers)]
    calls.append(op(writers, "read", "k", None, 1, 99, output=-1))
    calls.append(op(writers + 1, "write", "easy", 1, 0, 1))
    return history(*calls)


def test_zero_budget_gives_unknown() -> None:
    result = check_history(simulate(1, processes=3, per_process=20), budget=0)
    assert result.verdict == "unknown"
    assert all(r.verdict == "unknown" for r in result.keys.values())
    assert "out of time budget" in result.describe()


def test_budget_stops_an_exponential_search() -> None:
    start = time.monotonic()
    result = check_history(hard_history(), budget=0.3)
    elapsed = time.monotonic() - start
    assert result.verdict == "unknown"
    assert result.keys["k"].verdict == "unknown"
    assert result.keys["easy"].verdict == "linearizable"  # small keys go first
    assert elapsed < 2


def test_violation_outranks_unknown() -> None:
    records = hard_history() + history(
        op(90, "write", "z", 1, 200, 201), op(90, "read", "z", None, 202, 203, output=2)
    )
    assert check_history(records, budget=0.3).verdict == "not linearizable"


def test_injected_clock_drives_the_budget() -> None:
    ticks = iter(range(1_000_000))

    def clock() -> float:
        return float(next(ticks))

    # Ticks: 0 start, 1-2 the easy key, 3 the hard key starts, 4 and 5 at its
    # 1024th and 2048th steps: the deadline (0 + 5) cuts the search there.
    result = check_history(hard_history(12), budget=5, clock=clock)
    assert result.keys["easy"].verdict == "linearizable"
    assert result.keys["k"].verdict == "unknown"
    assert next(ticks) == 8  # 6 and 7 timed the key and the check: nothing else polled


# -- simulated runs and generated executions -----------------------------------


def test_big_simulated_history_is_linearizable_within_budget() -> None:
    records = simulate(42, processes=10, per_process=2000, keys=8, info_rate=0.02)
    operations = pair(records)
    start = time.monotonic()
    result = check(operations, budget=60)
    elapsed = time.monotonic() - start
    assert result.verdict == "linearizable", result.describe()
    assert len(result.keys) == 8
    assert result.operations > 15_000
    assert elapsed < 30, f"took {elapsed:.1f}s"


@pytest.mark.parametrize("seed", range(5))
def test_simulated_histories_with_unknown_outcomes(seed: int) -> None:
    records = simulate(seed, processes=6, per_process=150, keys=2, info_rate=0.1)
    assert verdict(records) == "linearizable"


def test_corrupting_one_read_of_a_simulation_is_caught() -> None:
    records = simulate(7, processes=5, per_process=100, keys=1)
    reads = [i for i, r in enumerate(records) if r.f == "read" and r.type == "ok"]
    i = reads[len(reads) // 2]
    records[i] = Record(
        records[i].process, "ok", "read", records[i].key, "never written", records[i].time
    )
    result = check_history(records)
    assert result.verdict == "not linearizable"
    assert result.violations[0].stuck.output == "never written"


OUTCOMES: tuple[RecordType, ...] = ("ok", "ok", "ok", "info")


@st.composite
def sequential_executions(draw: st.DrawFn) -> list[Record]:
    """A sequential execution on a register, then intervals that keep its order possible.

    Operation ``i`` takes effect at time ``i``; its interval stretches a random
    amount either side, so the history overlaps freely but stays linearizable.
    """
    n = draw(st.integers(0, 30))
    register: dict[str, Any] = {}
    calls = []
    free_at: list[float] = []  # per process: when its last call returned
    for i in range(n):
        key = draw(st.sampled_from(["a", "b"]))
        f = draw(st.sampled_from(["read", "write", "cas", "cas-miss"]))
        call = i - draw(st.floats(0, 3))
        ret = i + draw(st.floats(0, 3))
        outcome = draw(st.sampled_from(OUTCOMES))
        process = next((p for p, t in enumerate(free_at) if t < call), len(free_at))
        if process == len(free_at):
            free_at.append(0)
        free_at[process] = ret if outcome == "ok" else float("inf")
        current = register.get(key)
        if f == "read":
            calls.append(op(process, "read", key, None, call, ret, outcome, current))
        elif f == "write":
            register[key] = i
            calls.append(op(process, "write", key, i, call, ret, outcome))
        elif f == "cas":
            register[key] = i
            calls.append(op(process, "cas", key, [current, i], call, ret, outcome))
        else:
            calls.append(op(process, "cas", key, [-1, i], call, ret, "fail"))
        if outcome == "info" and f != "read":
            # An unknown outcome that took effect here may have returned never.
            calls[-1] = calls[-1][:1]
    return history(*calls)


@settings(deadline=None, max_examples=300)
@given(sequential_executions())
def test_generated_linearizable_executions_pass(records: list[Record]) -> None:
    assert check_history(records, budget=10).verdict == "linearizable"


@settings(deadline=None, max_examples=200)
@given(sequential_executions(), st.data())
def test_a_read_of_an_unwritten_value_fails(records: list[Record], data: st.DataObject) -> None:
    reads = [i for i, r in enumerate(records) if r.f == "read" and r.type == "ok"]
    if not reads:
        return
    i = data.draw(st.sampled_from(reads))
    r = records[i]
    records[i] = Record(r.process, "ok", "read", r.key, "bogus", r.time)
    assert check_history(records, budget=10).verdict == "not linearizable"


# -- against a brute-force oracle ----------------------------------------------


def brute_force(ops: list[Operation]) -> bool:
    """Try every order that respects real time; unknown-outcome ops may be left out."""

    def go(remaining: list[Operation], state: Any) -> bool:
        if all(not o.known for o in remaining):
            return True
        for o in remaining:
            if any(p.ret < o.call for p in remaining if p is not o):
                continue  # something still pending returned before o began
            if o.f == "read":
                fits, after = o.output == state, state
            elif o.f == "write":
                fits, after = True, o.value
            else:
                fits, after = o.value[0] == state, o.value[1]
            if fits and go([p for p in remaining if p is not o], after):
                return True
        return False

    return go([o for o in ops if o.known or o.f != "read"], None)


FUNCTIONS: tuple[Function, ...] = ("read", "write", "cas")


@st.composite
def small_histories(draw: st.DrawFn) -> list[Record]:
    """Arbitrary tiny histories on one key: linearizable or not, values repeating."""
    calls = []
    values = st.sampled_from([None, 1, 2])
    for process in range(draw(st.integers(1, 7))):
        f = draw(st.sampled_from(FUNCTIONS))
        call = draw(st.integers(0, 10))
        ret = call + draw(st.integers(0, 5))
        outcome: RecordType = draw(st.sampled_from(("ok", "ok", "info", "fail")))
        value = [draw(values), draw(values)] if f == "cas" else draw(values)
        calls.append(op(process, f, "k", value, call, ret, outcome, value if f == "read" else None))
    return history(*calls)


@settings(deadline=None, max_examples=1500)
@given(small_histories())
def test_agrees_with_brute_force(records: list[Record]) -> None:
    expected = "linearizable" if brute_force(pair(records)) else "not linearizable"
    assert check_history(records, budget=10).verdict == expected
