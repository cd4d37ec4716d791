"""The durability checkers: registers keep the last write, sets keep every add."""

from __future__ import annotations

import pytest
from chaos_support import history, op, simulate

from amber.chaos.durability import LostWrite, SetLoss, check_registers, check_sets
from amber.chaos.history import Record, pair


def registers(*calls: list[Record]) -> list[LostWrite | SetLoss]:
    return check_registers(pair(history(*calls))).problems


def test_final_read_of_the_last_write_is_durable() -> None:
    result = check_registers(
        pair(
            history(
                op(0, "write", "k", 1, 0, 1),
                op(0, "write", "k", 2, 2, 3),
                op(1, "read", "k", None, 10, 11, output=2),
            )
        )
    )
    assert result.valid
    assert result.checked == ["k"]
    assert "durability: ok" in result.describe()


def test_a_superseded_value_in_the_final_read_is_a_lost_write() -> None:
    result = check_registers(
        pair(
            history(
                op(0, "write", "k", 1, 0, 1),
                op(0, "write", "k", 2, 2, 3),
                op(1, "read", "k", None, 10, 11, output=1),
            )
        )
    )
    assert not result.valid
    (problem,) = result.problems
    assert isinstance(problem, LostWrite)
    assert problem.written
    assert [w.value for w in problem.allowed] == [2]
    assert "overwritten value" in result.describe()
    assert result.to_json()["problems"][0]["key"] == "k"


@pytest.mark.parametrize("last", [1, 2])
def test_either_of_two_concurrent_writes_may_survive(last: int) -> None:
    assert not registers(
        op(0, "write", "k", 1, 0, 5),
        op(1, "write", "k", 2, 1, 4),
        op(2, "read", "k", None, 10, 11, output=last),
    )


@pytest.mark.parametrize("last", [1, 2])
def test_an_unknown_write_may_or_may_not_survive(last: int) -> None:
    assert not registers(
        op(0, "write", "k", 1, 0, 1),
        op(1, "write", "k", 2, 2, 3, outcome="info"),
        op(2, "read", "k", None, 10, 11, output=last),
    )


def test_an_unknown_write_may_land_after_later_acknowledged_ones() -> None:
    # Its outcome was unknown at 0.7: it may take effect after w3, so it may be last.
    assert not registers(
        op(0, "write", "k", 1, 0, 1),
        op(1, "write", "k", 2, 0.5, 0.7, outcome="info"),
        op(0, "write", "k", 3, 2, 3),
        op(2, "read", "k", None, 10, 11, output=2),
    )


def test_null_is_durable_only_while_nothing_was_acknowledged() -> None:
    assert not registers(
        op(0, "write", "k", 1, 0, 1, outcome="info"),
        op(2, "read", "k", None, 10, 11, output=None),
    )
    problems = registers(
        op(0, "write", "k", 1, 0, 1),
        op(2, "read", "k", None, 10, 11, output=None),
    )
    assert len(problems) == 1


def test_a_value_nobody_wrote_is_reported_as_such() -> None:
    (problem,) = registers(
        op(0, "write", "k", 1, 0, 1),
        op(2, "read", "k", None, 10, 11, output=99),
    )
    assert isinstance(problem, LostWrite)
    assert not problem.written
    assert "no write carried" in problem.describe()


def test_cas_counts_as_a_write_of_its_new_value() -> None:
    calls = (
        op(0, "write", "k", 1, 0, 1),
        op(0, "cas", "k", [1, 2], 2, 3),
    )
    assert not registers(*calls, op(2, "read", "k", None, 10, 11, output=2))
    assert registers(*calls, op(2, "read", "k", None, 10, 11, output=1))


def test_the_latest_read_is_the_final_one_and_writes_after_it_do_not_count() -> None:
    assert not registers(
        op(0, "write", "k", 1, 0, 1),
        op(1, "read", "k", None, 2, 3, output=7),  # not final: linearizability's job
        op(1, "read", "k", None, 10, 11, output=1),
        op(0, "write", "k", 2, 20, 21),
    )


def test_keys_without_a_final_read_are_unchecked() -> None:
    result = check_registers(pair(history(op(0, "write", "k", 1, 0, 1))))
    assert result.valid
    assert result.unchecked == ["k"]
    assert "no final read for: 'k'" in result.describe()


@pytest.mark.parametrize("seed", range(3))
def test_simulated_runs_with_a_final_read_are_durable(seed: int) -> None:
    records = simulate(seed, processes=5, per_process=100, keys=3, info_rate=0.1, final_reads=True)
    result = check_registers(pair(records))
    assert result.valid, result.describe()
    assert result.checked == ["k0", "k1", "k2"]


def test_a_simulated_run_that_loses_its_last_write_is_caught() -> None:
    records = simulate(5, processes=5, per_process=100, keys=1, final_reads=True)
    last_write = max(
        (r for r in records if r.type == "ok" and r.f == "write"), key=lambda r: r.time
    )
    final = records[-1]
    records[-1] = Record(final.process, "ok", "read", final.key, last_write.value - 1, final.time)
    assert not check_registers(pair(records)).valid


# -- sets ----------------------------------------------------------------------


def test_every_acknowledged_add_is_in_the_final_read() -> None:
    records = history(
        op(0, "add", "s", 1, 0, 1),
        op(1, "add", "s", 2, 0, 1, outcome="info"),
        op(2, "add", "s", 3, 0, 1, outcome="info"),
        op(3, "add", "s", 4, 0, 1, outcome="fail"),
        op(0, "read-set", "s", None, 5, 6, output=[2, 1]),
    )
    result = check_sets(records)
    assert result.valid, result.describe()
    assert result.checked == ["s"]


def test_lost_unexpected_and_failed_elements_are_reported() -> None:
    records = history(
        op(0, "add", "s", 1, 0, 1),
        op(1, "add", "s", 2, 0, 1),
        op(3, "add", "s", 4, 0, 1, outcome="fail"),
        op(0, "read-set", "s", None, 2, 3, output=[1, 2]),  # not the final read
        op(0, "read-set", "s", None, 5, 6, output=[1, 4, 9]),
    )
    result = check_sets(records)
    (problem,) = result.problems
    assert isinstance(problem, SetLoss)
    assert problem.lost == (2,)
    assert problem.unexpected == (9,)
    assert problem.failed_but_present == (4,)
    text = result.describe()
    assert "acknowledged but missing: [2]" in text
    assert "never attempted but present: [9]" in text
    assert "failed but present: [4]" in text


def test_an_element_failed_once_but_retried_may_be_present() -> None:
    records = history(
        op(0, "add", "s", "x", 0, 1, outcome="fail"),
        op(0, "add", "s", "x", 2, 3, outcome="info"),
        op(0, "read-set", "s", None, 5, 6, output=["x"]),
    )
    assert check_sets(records).valid


def test_sets_without_a_final_read_are_unchecked() -> None:
    result = check_sets(history(op(0, "add", "s", 1, 0, 1), op(0, "write", "k", 1, 2, 3)))
    assert result.valid
    assert result.unchecked == ["s"]
