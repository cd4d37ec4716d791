"""Durability: acknowledged writes survive the faults, as the final reads show.

Two checks on a paired history (:func:`~amber.chaos.history.pair`), each
judged against the run's *final reads*, which the harness performs per key
after healing every fault and waiting for recovery.

**Registers** (:func:`check_registers`). Per key, the final read ``F`` is
the ``ok`` read with the latest invocation. A *write* is a ``write`` or a
``cas`` (its new value), completed ``ok`` or ``info`` (an unknown outcome
may have taken effect). A write ``w`` is *superseded* when an acknowledged
write ``w2`` was invoked after ``w`` returned and returned before ``F`` was
invoked: then ``w2`` certainly came after ``w`` and before ``F``. The rule:

    ``F`` must read the value of some write ``w`` invoked before ``F``
    returned and not superseded; or ``null`` if no write was acknowledged
    before ``F`` was invoked.

That is "every acknowledged write is either read or superseded", made
precise for concurrency: of writes that overlap, any one may be last. A
final value outside the allowed set means a later acknowledged write was
lost (the report names the writes that should have been seen) or a value
appeared that nobody wrote. Workloads should write unique values, so a
value names its write.

**Sets** (:func:`check_sets`). Per key, the final ``read-set`` (the ``ok``
one invoked last) must contain every element whose ``add`` was
acknowledged (else *lost*), and only elements some ``add`` attempted (else
*unexpected*). An element whose every ``add`` completed ``fail`` but that is
present is reported too (*failed but present*): ``fail`` promises the
operation did not happen.

Keys with writes or adds but no final read are listed as ``unchecked``.
Values compare by canonical JSON (sorted members), so ``1`` and ``1.0``
differ.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .history import Operation, Record, pair

__all__ = [
    "DurabilityResult",
    "LostWrite",
    "SetLoss",
    "check_registers",
    "check_sets",
]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class LostWrite:
    """A key whose final read shows no value that could have been last.

    ``allowed`` are the writes whose value the final read could have shown;
    an empty tuple with ``allowed_null`` means only ``null`` was allowed.
    """

    key: str
    final_read: Operation
    allowed: tuple[Operation, ...]
    allowed_null: bool
    written: bool  # whether any write (of any outcome) ever carried the value read

    def describe(self) -> str:
        """One paragraph for a report."""
        got = json.dumps(self.final_read.output)
        origin = "an overwritten value" if self.written else "a value no write carried"
        lines = [f"key {self.key!r}: final read {got} is {origin}; allowed:"]
        if self.allowed_null:
            lines.append("    null (no write acknowledged before the final read)")
        lines.extend(f"    {op.describe()}" for op in self.allowed)
        lines.append(f"  final read: {self.final_read.describe()}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "key": self.key,
            "final_read": self.final_read.to_json(),
            "allowed": [op.to_json() for op in self.allowed],
            "allowed_null": self.allowed_null,
            "written": self.written,
        }


@dataclass(frozen=True, slots=True)
class SetLoss:
    """A set whose final read misses acknowledged elements or holds foreign ones."""

    key: str
    final_read: Operation
    lost: tuple[Any, ...]
    unexpected: tuple[Any, ...]
    failed_but_present: tuple[Any, ...]

    def describe(self) -> str:
        """One paragraph for a report."""
        parts = [f"set {self.key!r} (final read {self.final_read.describe()}):"]
        for name, elements in (
            ("acknowledged but missing", self.lost),
            ("never attempted but present", self.unexpected),
            ("failed but present", self.failed_but_present),
        ):
            if elements:
                parts.append(f"  {name}: {json.dumps(list(elements))}")
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "key": self.key,
            "final_read": self.final_read.to_json(),
            "lost": list(self.lost),
            "unexpected": list(self.unexpected),
            "failed_but_present": list(self.failed_but_present),
        }


@dataclass(frozen=True, slots=True)
class DurabilityResult:
    """The outcome of one durability check; ``valid`` iff there are no problems."""

    checked: list[str]
    unchecked: list[str]
    problems: list[LostWrite | SetLoss] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Whether every checked key kept its acknowledged writes."""
        return not self.problems

    def describe(self) -> str:
        """A report paragraph."""
        lost = len(self.problems)
        verdict = "ok" if self.valid else f"{lost} key{'s' * (lost != 1)} lost data"
        checked = len(self.checked)
        lines = [f"durability: {verdict} ({checked} key{'s' * (checked != 1)} checked)"]
        if self.unchecked:
            lines.append(f"  no final read for: {', '.join(map(repr, self.unchecked))}")
        lines.extend(p.describe() for p in self.problems)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "valid": self.valid,
            "checked": self.checked,
            "unchecked": self.unchecked,
            "problems": [p.to_json() for p in self.problems],
        }


def _final(ops: list[Operation], f: str) -> Operation | None:
    reads = [op for op in ops if op.f == f and op.known]
    return max(reads, key=lambda op: (op.call, op.index), default=None)


def _group(operations: Iterable[Operation], functions: set[str]) -> dict[str, list[Operation]]:
    parts: dict[str, list[Operation]] = {}
    for op in operations:
        if op.f in functions:
            parts.setdefault(op.key, []).append(op)
    return parts


def check_registers(operations: Iterable[Operation]) -> DurabilityResult:
    """Check that each key's final read shows a write that could have been last.

    See the module doc for the exact rule.
    """
    checked: list[str] = []
    unchecked: list[str] = []
    problems: list[LostWrite | SetLoss] = []
    for key, ops in sorted(_group(operations, {"read", "write", "cas"}).items()):
        writes = [op for op in ops if op.f in ("write", "cas")]
        final = _final(ops, "read")
        if final is None:
            if writes:
                unchecked.append(key)
            continue
        checked.append(key)
        # Acknowledged writes certainly done before the final read started.
        done = [w for w in writes if w.known and w.ret < final.call]
        # w is superseded iff one of them was invoked after w returned, i.e.
        # iff w returned before the latest of their invocations.
        last_done_call = max((w.call for w in done), default=-math.inf)
        allowed = tuple(w for w in writes if w.call < final.ret and w.ret >= last_done_call)
        allowed_null = not done
        got = _canonical(final.output)
        if (final.output is None and allowed_null) or any(
            _canonical(_new_value(w)) == got for w in allowed
        ):
            continue
        written = any(_canonical(_new_value(w)) == got for w in writes)
        problems.append(LostWrite(key, final, allowed, allowed_null, written))
    return DurabilityResult(checked, unchecked, problems)


def _new_value(write: Operation) -> Any:
    return write.value[1] if write.f == "cas" else write.value


def check_sets(records: Iterable[Record]) -> DurabilityResult:
    """Check that each set's final ``read-set`` kept every acknowledged ``add``.

    Takes the raw records, not paired operations: attempts that completed
    ``fail`` matter here (an element whose adds all failed must not appear).
    """
    relevant = [r for r in records if r.f in ("add", "read-set")]
    attempted: dict[str, dict[str, Any]] = {}
    for record in relevant:
        if record.type == "invoke" and record.f == "add":
            attempted.setdefault(record.key, {})[_canonical(record.value)] = record.value
    checked: list[str] = []
    unchecked: list[str] = []
    problems: list[LostWrite | SetLoss] = []
    parts = _group(pair(relevant), {"add", "read-set"})
    for key in sorted(attempted.keys() | parts.keys()):
        ops = parts.get(key, [])
        final = _final(ops, "read-set")
        if final is None:
            unchecked.append(key)
            continue
        checked.append(key)
        elements = final.output if isinstance(final.output, list) else []
        present = {_canonical(e): e for e in elements}
        tried = attempted.get(key, {})
        adds = [op for op in ops if op.f == "add"]
        acked = {_canonical(op.value) for op in adds if op.known}
        # pair() dropped the adds that failed: what is left may have happened.
        maybe = {_canonical(op.value) for op in adds}
        lost = sorted(acked - present.keys())
        unexpected = sorted(present.keys() - tried.keys())
        failed_present = sorted((present.keys() & tried.keys()) - maybe)
        if lost or unexpected or failed_present:
            problems.append(
                SetLoss(
                    key,
                    final,
                    tuple(tried[e] for e in lost),
                    tuple(present[e] for e in unexpected),
                    tuple(present[e] for e in failed_present),
                )
            )
    return DurabilityResult(checked, unchecked, problems)
