"""The history format: records to and from JSON lines, and pairing into operations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from chaos_support import history, op

from amber.chaos.history import (
    HistoryWriter,
    MalformedHistory,
    Record,
    by_key,
    dumps_record,
    pair,
    parse_record,
    read_history,
    write_history,
)
from amber.errors import InvalidArgument


def test_records_round_trip_through_a_file(tmp_path: Path) -> None:
    records = history(
        op(0, "cas", "k", [1, {"a": [2]}], 0.5, 1.25),
        op(1, "read", "k", None, 0.75, 1.0, output=None),
        op(2, "add", "s", "x", 2, None),
    )
    path = tmp_path / "history.jsonl"
    write_history(path, records)
    assert read_history(path) == records
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["process", "type", "f", "key", "value", "time"]


def test_writer_appends_and_close_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    a, b = op(0, "write", "k", 1, 0, 1)
    with HistoryWriter(path) as writer:
        writer.append(a)
    with HistoryWriter(path) as writer:
        writer.append(b)
        writer.close()
    writer.close()
    with pytest.raises(InvalidArgument):
        writer.append(a)
    assert read_history(path) == [a, b]


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    (record,) = op(0, "write", "k", 1, 0, None)
    path.write_text(dumps_record(record) + "\n\n" + dumps_record(record)[:20])
    assert read_history(path) == [record]


def test_a_broken_middle_line_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    (record,) = op(0, "write", "k", 1, 0, None)
    path.write_text("{oops\n" + dumps_record(record) + "\n")
    with pytest.raises(MalformedHistory, match=r"h\.jsonl:1: not JSON"):
        read_history(path)


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ([], "expected a JSON object"),
        ({"type": "ok", "f": "read", "key": "k", "time": 1}, "missing field 'process'"),
        ({"process": True, "type": "ok", "f": "read", "key": "k", "time": 1}, "process"),
        ({"process": 1, "type": "done", "f": "read", "key": "k", "time": 1}, "type must be"),
        ({"process": 1, "type": "ok", "f": "inc", "key": "k", "time": 1}, "f must be"),
        ({"process": 1, "type": "ok", "f": "read", "key": 3, "time": 1}, "key must be"),
        ({"process": 1, "type": "ok", "f": "read", "key": "k", "time": "x"}, "time must be"),
        ({"process": 1, "type": "ok", "f": "cas", "key": "k", "time": 1, "value": 1}, "cas"),
    ],
)
def test_parse_record_rejects_malformed_objects(obj: object, message: str) -> None:
    with pytest.raises(MalformedHistory, match=message):
        parse_record(obj, "here")


def test_pair_turns_completions_into_intervals() -> None:
    records = history(
        op(0, "write", "k", 1, 0, 1),
        op(1, "read", "k", None, 0.5, 2, output=1),
        op(2, "write", "k", 2, 0.6, 3, outcome="fail"),
        op(3, "cas", "k", [1, 3], 0.7, 4, outcome="info"),
        op(4, "write", "j", 5, 0.8, None),
    )
    ops = pair(records)
    assert [(o.f, o.status, o.ret) for o in ops] == [
        ("write", "ok", 1),
        ("read", "ok", 2),
        ("cas", "info", math.inf),
        ("write", "info", math.inf),
    ]
    assert ops[1].output == 1
    assert ops[2].output is None
    assert [o.index for o in ops] == sorted(o.index for o in ops)
    assert list(by_key(ops)) == ["k", "j"]
    assert "inf" in ops[2].describe()
    assert ops[2].to_json()["ret"] is None


def test_a_new_invocation_makes_the_pending_one_unknown() -> None:
    records = [
        Record(0, "invoke", "write", "k", 1, 0),
        Record(0, "invoke", "write", "k", 2, 1),
        Record(0, "ok", "write", "k", 2, 2),
    ]
    first, second = pair(records)
    assert (first.value, first.status, first.ret) == (1, "info", math.inf)
    assert (second.value, second.status, second.ret) == (2, "ok", 2)


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([Record(0, "ok", "write", "k", 1, 0)], "no pending invocation"),
        (
            [Record(0, "invoke", "write", "k", 1, 0), Record(0, "ok", "read", "k", 1, 1)],
            "does not match",
        ),
        (
            [Record(0, "invoke", "write", "k", 1, 5), Record(0, "ok", "write", "k", 1, 1)],
            "precedes its invocation",
        ),
    ],
)
def test_pair_rejects_impossible_histories(records: list[Record], message: str) -> None:
    with pytest.raises(MalformedHistory, match=message):
        pair(records)
