"""Update ops: a value computed from the current one when the batch applies.

The store runs the named function on the value it has at apply time, so an
update never conflicts; a function that refuses the value is a no-op with
its own answer while the batch's other ops apply.
"""

from __future__ import annotations

import pytest
from test_apply import run

from amber.config import Limits
from amber.errors import Corrupted
from amber.model import freeze, pack
from amber.store.batch import Batch, Put, Update, decode_record, encode_body, stamp
from amber.store.state import Store, Updated
from amber.store.updates import check_update


def value(store: Store, key: str) -> object:
    return store.table_state("t").rows[key][0]


def test_incr_counts_from_absent_as_text_and_keeps_the_kind() -> None:
    store = Store()
    result = run(store, Update("t", "c", "incr", (5,)), Update("t", "c", "incr", (-2,)))
    assert [o.result for o in result.outcomes] == [5, 3]  # type: ignore[union-attr]
    assert value(store, "c") == "3"  # as Redis: INCR makes a string
    run(store, Put("t", "n", 40))
    assert run(store, Update("t", "n", "incr", (2,))).outcomes[0].result == 42  # type: ignore[union-attr]
    assert value(store, "n") == 42  # a JSON number stays a number


@pytest.mark.parametrize(
    ("stored", "error"),
    [
        ("abc", "ERR value is not an integer or out of range"),
        (" 1", "ERR value is not an integer or out of range"),
        ("1_0", "ERR value is not an integer or out of range"),
        (str(2**63 - 1), "ERR increment or decrement would overflow"),
        (1.5, "WRONGTYPE Operation against a key holding the wrong kind of value"),
        ({"a": 1}, "WRONGTYPE Operation against a key holding the wrong kind of value"),
    ],
)
def test_a_refused_update_changes_nothing_and_the_rest_applies(stored: object, error: str) -> None:
    store = Store()
    run(store, Put("t", "c", freeze(stored)))
    before = store.table_state("t").rows["c"]
    result = run(store, Update("t", "c", "incr", (1,)), Put("t", "other", "x"))
    outcome = result.outcomes[0]
    assert type(outcome) is Updated
    assert outcome.error == error and outcome.result is None and outcome.record == before
    assert store.table_state("t").rows["c"] == before
    assert value(store, "other") == "x" and result.revision == 2
    assert [c.key for c in result.changes] == ["other"]


def test_incr2_reads_integers_as_redis_and_incr_stays_as_logged() -> None:
    """A name's meaning is fixed once logged: ``incr`` still reads "01", ``incr2`` refuses."""
    store = Store()
    run(store, Put("t", "z", "01"), Put("t", "m", "-0"), Put("t", "h", freeze({"n": "01"})))
    for fn, key in (("incr2", "z"), ("incr2", "m")):
        outcome = run(store, Update("t", key, fn, (1,))).outcomes[0]
        assert outcome.error == "ERR value is not an integer or out of range"  # type: ignore[union-attr]
    outcome = run(store, Update("t", "h", "hincrby2", ("n", 1))).outcomes[0]
    assert outcome.error == "ERR hash value is not an integer"  # type: ignore[union-attr]
    assert run(store, Update("t", "z", "incr", (1,))).outcomes[0].result == 2  # type: ignore[union-attr]
    assert run(store, Update("t", "h", "hincrby", ("n", 1))).outcomes[0].result == 2  # type: ignore[union-attr]
    assert run(store, Update("t", "c", "incr2", (-5,))).outcomes[0].result == -5  # type: ignore[union-attr]
    assert run(store, Update("t", "c", "incr2", (5,))).outcomes[0].result == 0  # type: ignore[union-attr]


def test_an_update_keeps_the_expiry_and_sees_expired_as_absent() -> None:
    store = Store()
    run(store, Put("t", "c", "7", ttl_ms=500), now=1000)
    run(store, Update("t", "c", "incr", (1,)), now=1100)
    assert store.table_state("t").rows["c"][0] == "8"
    assert store.table_state("t").rows["c"][4] == 1500
    run(store, Update("t", "c", "incr", (1,)), now=2000)  # expired by then
    assert store.table_state("t").rows["c"][0] == "1"
    assert store.table_state("t").rows["c"][4] is None


def test_append_and_hincrby() -> None:
    store = Store()
    out = run(store, Update("t", "s", "append", ("hé",)), Update("t", "s", "append", ("!",)))
    assert [o.result for o in out.outcomes] == [3, 4]  # type: ignore[union-attr]
    assert value(store, "s") == "hé!"
    out = run(store, Update("t", "h", "hincrby", ("n", 2)), Update("t", "h", "hincrby", ("n", 3)))
    assert [o.result for o in out.outcomes] == [2, 5]  # type: ignore[union-attr]
    assert value(store, "h") == {"n": "5"}
    run(store, Put("t", "h", freeze({"n": 1, "s": "x"})))
    out = run(store, Update("t", "h", "hincrby", ("n", 1)), Update("t", "h", "hincrby", ("s", 1)))
    assert out.outcomes[0].result == 2  # type: ignore[union-attr]
    assert out.outcomes[1].error == "ERR hash value is not an integer"  # type: ignore[union-attr]
    assert value(store, "h") == {"n": 2, "s": "x"}


def test_an_update_may_not_grow_a_value_past_the_limit() -> None:
    store = Store(Limits(max_value_bytes=64))
    run(store, Put("t", "s", "x" * 50))
    out = run(store, Update("t", "s", "append", ("y" * 20,)))
    assert out.outcomes[0].error == "ERR the value would grow past 64 bytes"  # type: ignore[union-attr]
    assert len(pack(value(store, "s"))) <= 64


def test_updates_replay_to_the_same_state() -> None:
    ops = (Update("t", "c", "incr", (3,)), Put("t", "c", "x"), Update("t", "c", "incr", (1,)))
    first, second = Store(), Store()
    for store in (first, second):
        record = stamp(1000, encode_body(Batch(ops)))
        with store.lock:
            store.apply(1, decode_record(record))
    assert first.table_state("t").rows == second.table_state("t").rows
    assert value(first, "c") == "x"  # the last incr refused the string "x"


def test_the_codec_refuses_an_update_it_does_not_know() -> None:
    record = stamp(1, encode_body(Batch((Update("t", "k", "incr", (1,)),))))
    assert decode_record(record).ops == (Update("t", "k", "incr", (1,)),)
    renamed = bytes(record).replace(b"incr", b"incx")
    with pytest.raises(Corrupted, match="unknown update 'incx'"):
        decode_record(renamed)


def test_update_arguments_are_checked_by_signature() -> None:
    assert check_update("incr", (1,)) is None
    assert check_update("hincrby", ("f", -3)) is None
    assert "unknown update" in (check_update("nope", ()) or "")
    for bad in [("incr", ("1",)), ("incr", (True,)), ("incr", (2**63,)), ("append", (1,))]:
        assert check_update(*bad) is not None  # type: ignore[arg-type]
