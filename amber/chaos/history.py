"""The history of a chaos run, Jepsen-style: what clients asked and what they heard back.

A history file (``history.jsonl``) holds one JSON object per line, one per
*record*, in the order the harness observed them::

    {"process": 3, "type": "invoke", "f": "cas", "key": "k1", "value": [4, 7], "time": 12.5}
    {"process": 3, "type": "ok",     "f": "cas", "key": "k1", "value": [4, 7], "time": 12.51}

- ``process``: the client that issued the operation; a process has at most
  one operation in flight.
- ``type``: ``invoke`` when the call starts; then exactly one completion:
  ``ok`` (it took effect, ``value`` is the result: the value read for
  ``read``/``read-set``), ``fail`` (it certainly did not take effect) or
  ``info`` (unknown: a timeout or a lost connection; it may take effect at
  any moment after its invocation, even after the run ends).
- ``f``: ``read`` | ``write`` | ``cas`` | ``add`` | ``read-set`` (the eventual
  workload: ``read`` | ``put`` | ``merge`` | ``delete``, see :mod:`.eventual`). A ``cas``
  carries ``[expected, new]``; ``add`` carries the element added to the set
  named by ``key``; a ``read`` of a never-written key returns ``null``.
- ``time``: monotonic seconds on the harness's clock (one clock for all
  processes, so real-time order between operations is meaningful).

:func:`pair` turns records into :class:`Operation` intervals ``[call, ret]``,
the input of every checker. Everything here is pure except the two file
helpers, which only read and write that format.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, cast, get_args

from ..errors import InvalidArgument

__all__ = [
    "Function",
    "HistoryWriter",
    "MalformedHistory",
    "Operation",
    "Record",
    "RecordType",
    "by_key",
    "dumps_record",
    "pair",
    "parse_record",
    "read_history",
    "write_history",
]

RecordType = Literal["invoke", "ok", "fail", "info"]
#: ``put``, ``merge`` and ``delete``: the eventual workload (:mod:`.eventual`).
Function = Literal["read", "write", "cas", "add", "read-set", "put", "merge", "delete"]

_TYPES: frozenset[str] = frozenset(get_args(RecordType))
_FUNCTIONS: frozenset[str] = frozenset(get_args(Function))


class MalformedHistory(InvalidArgument):
    """A history record or file breaks the format: the message says which line and why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One line of a history: an invocation or a completion."""

    process: int
    type: RecordType
    f: Function
    key: str
    value: Any
    time: float

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this record, with the field order of the format."""
        return {
            "process": self.process,
            "type": self.type,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "time": self.time,
        }


@dataclass(frozen=True, slots=True)
class Operation:
    """One call as an interval of real time: the unit the checkers reason about.

    ``ret`` is ``math.inf`` when the outcome is unknown (``status ==
    "info"`` or the call never completed): such an operation may take effect
    at any time after ``call``, so it is concurrent with everything after it.
    ``value`` is the input (the invocation's value); ``output`` is what the
    ``ok`` completion carried (the value read), ``None`` for ``info``.
    ``index`` is the invocation's position in the history: unique, and a
    stable name for the operation in reports.
    """

    index: int
    process: int
    f: Function
    key: str
    value: Any
    output: Any
    call: float
    ret: float
    status: Literal["ok", "info"]

    @property
    def known(self) -> bool:
        """Whether the operation certainly took effect (it completed ``ok``)."""
        return self.status == "ok"

    def describe(self) -> str:
        """A one-line human summary, e.g. ``#12 p3 cas [4, 7] ok [1.002, 1.010]``."""
        if self.f not in ("read", "read-set"):
            shown = json.dumps(self.value)
        else:
            shown = json.dumps(self.output) if self.known else "?"
        ret = "inf" if math.isinf(self.ret) else f"{self.ret:.6f}"
        return (
            f"#{self.index} p{self.process} {self.f} {self.key!r} {shown} "
            f"{self.status} [{self.call:.6f}, {ret}]"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON object for reports (``ret`` is ``null`` when unknown)."""
        return {
            "index": self.index,
            "process": self.process,
            "f": self.f,
            "key": self.key,
            "value": self.value,
            "output": self.output,
            "call": self.call,
            "ret": None if math.isinf(self.ret) else self.ret,
            "status": self.status,
        }


def parse_record(obj: Any, where: str = "record") -> Record:
    """Validate one decoded JSON object into a :class:`Record`.

    Raises :class:`MalformedHistory` naming ``where`` (e.g. ``"history.jsonl:12"``).
    """
    if not isinstance(obj, dict):
        raise MalformedHistory(f"{where}: expected a JSON object, got {type(obj).__name__}")
    try:
        process, kind, f, key, time = (
            obj["process"],
            obj["type"],
            obj["f"],
            obj["key"],
            obj["time"],
        )
    except KeyError as exc:
        raise MalformedHistory(f"{where}: missing field {exc.args[0]!r}") from exc
    if type(process) is not int:
        raise MalformedHistory(f"{where}: process must be an integer, got {process!r}")
    if kind not in _TYPES:
        raise MalformedHistory(f"{where}: type must be one of {sorted(_TYPES)}, got {kind!r}")
    if f not in _FUNCTIONS:
        raise MalformedHistory(f"{where}: f must be one of {sorted(_FUNCTIONS)}, got {f!r}")
    if not isinstance(key, str):
        raise MalformedHistory(f"{where}: key must be a string, got {key!r}")
    if type(time) not in (int, float) or not math.isfinite(time):
        raise MalformedHistory(f"{where}: time must be a finite number, got {time!r}")
    value = obj.get("value")
    if f == "cas" and not (isinstance(value, list) and len(value) == 2):
        raise MalformedHistory(f"{where}: a cas value must be [expected, new], got {value!r}")
    return Record(process, cast(RecordType, kind), cast(Function, f), key, value, float(time))


def dumps_record(record: Record) -> str:
    """The record as one line of JSON (no trailing newline)."""
    return json.dumps(record.to_json(), separators=(", ", ": "), allow_nan=False)


def read_history(path: str | Path) -> list[Record]:
    """Read a ``history.jsonl`` file; blank lines are skipped.

    A final line cut short (the harness was killed mid-write) is ignored;
    anything else malformed raises :class:`MalformedHistory` with its line.
    """
    records: list[Record] = []
    with open(path, encoding="utf-8") as file:
        lines = file.read().split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # torn last line: no newline was written after it
                break
            raise MalformedHistory(f"{where}: not JSON ({exc.msg})") from exc
        records.append(parse_record(obj, where))
    return records


def write_history(path: str | Path, records: Iterable[Record]) -> None:
    """Write ``records`` as a ``history.jsonl`` file (replacing it)."""
    with HistoryWriter(path, append=False) as writer:
        for record in records:
            writer.append(record)


class HistoryWriter:
    """Appends records to a history file as they happen, one flushed line each.

    Flushing per line means a harness killed mid-run leaves a readable file
    (at worst a torn last line, which :func:`read_history` skips). Not
    thread-safe: give each writer one owner, or serialise calls. ``close()``
    is idempotent.
    """

    def __init__(self, path: str | Path, *, append: bool = True) -> None:
        self._file: IO[str] | None = open(path, "a" if append else "w", encoding="utf-8")  # noqa: SIM115

    def append(self, record: Record) -> None:
        """Write one record and flush it to the OS."""
        if self._file is None:
            raise InvalidArgument("HistoryWriter is closed")
        self._file.write(dumps_record(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file; later calls do nothing."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def pair(records: Iterable[Record]) -> list[Operation]:
    """Match each invocation with its process's next completion, in history order.

    - ``ok`` gives an operation with ``ret`` = the completion's time;
    - ``fail`` drops the operation: it certainly did not take effect;
    - ``info``, or no completion at all before the process invokes again or
      the history ends, gives ``ret = inf`` and ``status = "info"``.

    The result is ordered by invocation. A completion with no pending
    invocation, of another function or key, or earlier than its invocation
    raises :class:`MalformedHistory`.
    """
    pending: dict[int, tuple[int, Record]] = {}
    done: list[Operation] = []
    for position, record in enumerate(records):
        if record.type == "invoke":
            previous = pending.pop(record.process, None)
            if previous is not None:
                done.append(_unknown(*previous))
            pending[record.process] = (position, record)
            continue
        opened = pending.pop(record.process, None)
        if opened is None:
            raise MalformedHistory(
                f"record {position}: {record.type} of process {record.process} "
                "has no pending invocation"
            )
        index, invoke = opened
        if invoke.f != record.f or invoke.key != record.key:
            raise MalformedHistory(
                f"record {position}: completion {record.f} {record.key!r} does not match "
                f"invocation {invoke.f} {invoke.key!r} (record {index}) of process {record.process}"
            )
        if record.time < invoke.time:
            raise MalformedHistory(
                f"record {position}: completion at {record.time} precedes its invocation "
                f"at {invoke.time} (record {index})"
            )
        if record.type == "ok":
            done.append(
                Operation(
                    index,
                    invoke.process,
                    invoke.f,
                    invoke.key,
                    invoke.value,
                    record.value,
                    invoke.time,
                    record.time,
                    "ok",
                )
            )
        elif record.type == "info":
            done.append(_unknown(index, invoke))
    done.extend(_unknown(*opened) for opened in pending.values())
    done.sort(key=lambda op: op.index)
    return done


def _unknown(index: int, invoke: Record) -> Operation:
    return Operation(
        index,
        invoke.process,
        invoke.f,
        invoke.key,
        invoke.value,
        None,
        invoke.time,
        math.inf,
        "info",
    )


def by_key(operations: Iterable[Operation]) -> dict[str, list[Operation]]:
    """Partition operations by key, keeping their order (P-compositionality's split)."""
    parts: dict[str, list[Operation]] = {}
    for op in operations:
        parts.setdefault(op.key, []).append(op)
    return parts
