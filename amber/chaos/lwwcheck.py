"""Checkers of the eventual workload (last-writer-wins tables): pure functions over a run.

The workload (:mod:`amber.chaos.eventual`) writes, on a few keys of an
eventual table, through random members:

- ``put`` of ``{"put": u}`` (``u`` unique in the run): the key's *base*;
- ``merge`` of ``{f: u}`` for a top-level field ``f`` (never ``put``): an
  LWW register per field;
- ``delete``: the base becomes "absent".

Each acknowledged write carries its hybrid-clock stamp (``AMBER.TXN`` with
``"stamps": true``). So a key holds registers — ``base`` and one per field
— and each register's final value was written by exactly one write: a
``put``'s ``u`` by that put, a field's ``u`` by that merge, an absent base
by a delete (or nothing ever), an absent field by the base write that reset
it. The final state comes with each key's LWW stamps (``AMBER.LWW PULL``):
``base`` and per-field, where an absent entry means the base's.

Four checks (each a :class:`Check`, each with the offending operations):

- :func:`check_convergence`: every member holds the same documents and
  stamps once healed, within ``bound`` seconds of the heal.
- :func:`check_lost`: every acknowledged write is **present** (its register
  holds its value; for a delete, the base is absent with its stamp) or
  **superseded**: its register's final writer has a greater stamp. The
  final writer's stamp is the one it was acknowledged with; an ``info``
  write (a timeout: applied or not) is the writer only if its unique value
  is there, and then its stamp is learnt from the final state.
- :func:`check_origin`: no value from nowhere: every document read or left
  at the end is an object whose ``put`` value was put on that key, and
  whose other fields were merged there with that value, by a write invoked
  before the read returned (a ``fail``ed write never counts: it certainly
  did not happen); and a final register's stamp is the one its writer was
  acknowledged with.
- :func:`check_monotonic`: a member's stamps only grow: a write
  acknowledged by a member before another write to it was invoked has the
  smaller stamp — across restarts too (a clock that forgets the stamps it
  held would stamp a later write below an earlier one, and it would lose).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .history import Record
from .verdict import Overall

__all__ = [
    "BASE",
    "Check",
    "EventualJudgement",
    "Write",
    "check_convergence",
    "check_lost",
    "check_monotonic",
    "check_origin",
    "judge_eventual",
    "parse_stamp",
    "writes_of",
]

#: The field a put writes; the name of the base register.
BASE = "put"
Stamp = tuple[int, int, str]
ZERO: Stamp = (0, 0, "")


def parse_stamp(text: str) -> Stamp:
    """``ms.counter@node`` (how the server shows a stamp) as a comparable tuple."""
    clock, _, node = text.partition("@")
    ms, _, counter = clock.partition(".")
    return (int(ms), int(counter), node)


@dataclass(frozen=True, slots=True)
class Write:
    """One write of the history: what, where, and how it ended."""

    index: int
    process: int
    f: str
    key: str
    #: ``put``/``merge``: the unique value; ``delete``: None.
    value: Any
    #: The register it writes: ``put`` (the base) for put and delete, else the field.
    register: str
    node: str
    call: float
    ret: float | None
    status: str
    stamp: Stamp | None

    def describe(self) -> str:
        what = f"{self.f} {self.key}" + (
            f" {self.register}={self.value}" if self.value is not None else ""
        )
        stamp = "?" if self.stamp is None else f"{self.stamp[0]}.{self.stamp[1]}@{self.stamp[2]}"
        return f"#{self.index} p{self.process} {what} on {self.node} {self.status} @{stamp}"


def writes_of(records: Sequence[Record]) -> list[Write]:
    """Pair each write's invocation with its completion (none: ``info``)."""
    open_calls: dict[int, tuple[int, Record]] = {}
    out: list[Write] = []
    for index, record in enumerate(records):
        if record.f not in ("put", "merge", "delete"):
            continue
        if record.type == "invoke":
            open_calls[record.process] = (index, record)
            continue
        started = open_calls.pop(record.process, None)
        if started is not None:
            out.append(_write(started[0], started[1], record))
    out.extend(_write(i, r, None) for i, r in open_calls.values())
    return sorted(out, key=lambda w: w.index)


def _write(index: int, invoke: Record, done: Record | None) -> Write:
    spec = invoke.value or {}
    stamp = None
    if done is not None and done.type == "ok" and isinstance(done.value, dict):
        text = done.value.get("stamp")
        stamp = parse_stamp(text) if isinstance(text, str) else None
    return Write(
        index,
        invoke.process,
        invoke.f,
        invoke.key,
        spec.get("value"),
        spec.get("field", BASE) if invoke.f == "merge" else BASE,
        str(spec.get("node", "?")),
        invoke.time,
        None if done is None else done.time,
        "info" if done is None else done.type,
        stamp,
    )


@dataclass
class Check:
    """One checker's result: valid, what it looked at, and what went wrong."""

    name: str
    valid: bool = True
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, problem: str) -> None:
        self.valid = False
        if len(self.problems) < 50:
            self.problems.append(problem)

    def describe(self) -> str:
        head = f"{self.name}: {'ok' if self.valid else 'VIOLATED'} ({self.checked} checked)"
        return "\n".join([head, *(f"  {p}" for p in self.problems[:10])])

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "checked": self.checked,
            "problems": self.problems,
            **self.details,
        }


def check_convergence(
    states: Mapping[str, Mapping[str, Any]],
    seconds: float | None,
    bound: float,
) -> Check:
    """Every member's final ``{key: [document, stamps]}`` is the same, reached within
    ``bound`` seconds of the heal (``seconds`` None: never reached while polled)."""
    result = Check("convergence", checked=len(states))
    result.details["seconds"] = None if seconds is None else round(seconds, 3)
    result.details["bound"] = bound
    if seconds is None:
        result.fail(f"the members did not reach one state within the {bound:g} s polled")
    elif seconds > bound:
        result.fail(f"converged after {seconds:.1f} s, over the bound of {bound:g} s")
    names = sorted(states)
    # Tombstones (document None) are left out: each member collects them on its own time.
    live = {n: {k: v for k, v in states[n].items() if v[0] is not None} for n in names}
    for other in names[1:]:
        first, second = live[names[0]], live[other]
        for key in sorted(k for k in {*first, *second} if first.get(k) != second.get(k)):
            result.fail(
                f"{key}: {names[0]} has {first.get(key)!r}, {other} has {second.get(key)!r}"
            )
    return result


def _registers(doc: Any, stamps: Any) -> dict[str, tuple[Any, Stamp | None]]:
    """A final document's registers: ``name -> (value or None, stamp)``; the stamp is
    None for a key with no stamps at all: never written, or a tombstone collected."""
    base: Stamp | None = None
    fields: dict[str, Stamp] = {}
    if stamps:
        base = _as_stamp(stamps["base"])
        fields = {f: _as_stamp(s) for f, s in stamps.get("fields", {}).items()}
    out: dict[str, tuple[Any, Stamp | None]] = {}
    values = doc if isinstance(doc, dict) else {}
    for name in {BASE, *values, *fields}:
        out[name] = (values.get(name), fields.get(name, base))
    return out


def _as_stamp(raw: Any) -> Stamp:
    return parse_stamp(raw) if isinstance(raw, str) else (int(raw[0]), int(raw[1]), str(raw[2]))


def _writer(
    writes: Sequence[Write], key: str, register: str, value: Any, stamp: Stamp | None
) -> tuple[Write | None, Stamp]:
    """The write that left ``register`` of ``key`` as it is, and its stamp (see the module
    doc); ``(None, stamp)`` when no write of the history explains it.

    A key without stamps (its tombstone was collected: every member had it)
    was last deleted: by the latest acknowledged delete, or an ``info`` one.
    """
    if value is not None:  # a unique value: its merge, or its put
        kind = "put" if register == BASE else "merge"
        for w in writes:
            if w.key == key and w.f == kind and w.register == register and w.value == value:
                return w, (w.stamp or stamp or ZERO)
        return None, stamp or ZERO
    # absent: the base write with that stamp (a delete; for a field, also a put)
    kinds = ("delete",) if register == BASE or stamp is None else ("put", "delete")
    candidates = [w for w in writes if w.key == key and w.f in kinds]
    unknown = [w for w in candidates if w.status == "info"]
    if stamp is None:
        latest = max((w.stamp for w in candidates if w.stamp is not None), default=None)
        if latest is not None:
            return next(w for w in candidates if w.stamp == latest), latest
        # an info delete, stamp unknown: it may be later than anything
        return (unknown[0], (2**62, 0, "")) if unknown else (None, ZERO)
    if stamp == ZERO:
        return None, ZERO  # never written
    known = [w for w in candidates if w.stamp == stamp]
    if known:
        return known[0], stamp
    return (unknown[0] if unknown else None), stamp


def check_lost(
    writes: Sequence[Write],
    final: Mapping[str, Any],
    stamps: Mapping[str, Any],
) -> Check:
    """No acknowledged write lost: present, or superseded by a greater stamp (module doc).

    ``final`` maps each present key to its document, ``stamps`` each key
    (tombstones too) to ``{"base": stamp, "fields": {name: stamp}}``.
    """
    result = Check("no acknowledged write lost")
    for w in writes:
        if w.status != "ok":
            continue
        result.checked += 1
        if w.stamp is None:
            result.fail(f"{w.describe()}: acknowledged without a stamp")
            continue
        registers = _registers(final.get(w.key), stamps.get(w.key))
        value, stamp = registers.get(w.register, (None, registers[BASE][1]))
        present = value == w.value and (w.f != "delete" or stamp in (w.stamp, None))
        if present:
            continue
        writer, writer_stamp = _writer(writes, w.key, w.register, value, stamp)
        if writer is not None and writer_stamp > w.stamp:
            continue
        by = "no write" if writer is None else writer.describe()
        result.fail(f"LOST {w.describe()}: {w.key}.{w.register} ends as {value!r}, written by {by}")
    return result


def check_origin(
    records: Sequence[Record],
    writes: Sequence[Write],
    final: Mapping[str, Any],
    stamps: Mapping[str, Any],
) -> Check:
    """No value from nowhere, in any read or the final state; final stamps are the
    writers' (module doc)."""
    result = Check("no value from nowhere")
    attempted = [w for w in writes if w.status != "fail"]
    documents: list[tuple[str, str, Any, float]] = []
    for record in records:
        if record.f == "read" and record.type == "ok" and record.value is not None:
            documents.append(
                (
                    f"read of {record.key} at {record.time:.3f}",
                    record.key,
                    record.value,
                    record.time,
                )
            )
    documents.extend((f"final {key}", key, doc, float("inf")) for key, doc in sorted(final.items()))
    for what, key, doc, before in documents:
        result.checked += 1
        if not isinstance(doc, dict):
            result.fail(f"{what}: {doc!r} is not a document the workload wrote")
            continue
        for name, value in doc.items():
            kind = "put" if name == BASE else "merge"
            if not any(
                w.key == key
                and w.f == kind
                and w.register == name
                and w.value == value
                and w.call <= before
                for w in attempted
            ):
                result.fail(f"{what}: {name}={value!r} was never written there")
    for key in sorted({*final, *stamps}):
        for name, (value, stamp) in _registers(final.get(key), stamps.get(key)).items():
            writer, _ = _writer(attempted, key, name, value, stamp)
            if writer is None and stamp not in (ZERO, None) and value is None and name == BASE:
                result.fail(f"final {key}: deleted at {stamp}, by no delete in the history")
            elif writer is not None and writer.stamp is not None and writer.stamp != stamp:
                result.fail(
                    f"final {key}.{name}: stamped {stamp}, but its writer {writer.describe()}"
                )
    return result


def check_monotonic(writes: Sequence[Write]) -> Check:
    """Each member's acknowledged writes, in real-time order, have growing stamps."""
    result = Check("stamps grow on each member")
    by_node: dict[str, list[Write]] = {}
    for w in writes:
        if w.status == "ok" and w.stamp is not None and w.ret is not None:
            by_node.setdefault(w.node, []).append(w)
    for node, mine in sorted(by_node.items()):
        returned = sorted(mine, key=lambda w: w.ret or 0.0)
        latest: Write | None = None  # the greatest stamp among writes returned so far
        i = 0
        for w in sorted(mine, key=lambda w: w.call):
            while i < len(returned) and (returned[i].ret or 0.0) < w.call:
                done = returned[i]
                if latest is None or (done.stamp or ZERO) > (latest.stamp or ZERO):
                    latest = done
                i += 1
            result.checked += 1
            if latest is not None and (w.stamp or ZERO) <= (latest.stamp or ZERO):
                result.fail(
                    f"{node} stamped {w.describe()} below {latest.describe()}, "
                    "which it acknowledged before"
                )
    return result


@dataclass
class EventualJudgement:
    """The eventual workload's verdict: the three checks and the numbers reported."""

    verdict: Overall
    convergence: Check
    lost: Check
    origin: Check
    monotonic: Check
    operations: dict[str, dict[str, int]]
    #: Per member: states refused for clock skew (``AMBER.LWW STATUS``: ``refused_states``,
    #: once each, per peer in ``refused_from``; ``refused_stamps`` counts the retries too).
    members: dict[str, Any] = field(default_factory=dict)

    @property
    def checked_operations(self) -> int:
        return sum(sum(c.values()) for c in self.operations.values())

    def describe(self) -> str:
        parts = ["workload: eventual (last-writer-wins table)"]
        checks = (self.convergence, self.lost, self.origin, self.monotonic)
        parts += [c.describe() for c in checks]
        seconds = self.convergence.details.get("seconds")
        if seconds is not None:
            parts.append(f"converged {seconds:.2f} s after the heal")
        for node, info in sorted(self.members.items()):
            parts.append(
                f"  {node}: {info.get('refused_states', 0)} states refused for clock skew "
                f"({info.get('refused_stamps', 0)} refusals with the retries), "
                f"{info.get('keys', 0)} keys"
            )
        parts.append(f"verdict: {self.verdict.upper()}")
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": "eventual",
            "verdict": self.verdict,
            "operations": self.operations,
            "convergence": self.convergence.to_json(),
            "lost_writes": self.lost.to_json(),
            "from_nowhere": self.origin.to_json(),
            "stamps_grow": self.monotonic.to_json(),
            "members": self.members,
        }


def judge_eventual(
    records: Sequence[Record],
    states: Mapping[str, Mapping[str, Any]],
    seconds: float | None,
    *,
    bound: float = 30.0,
    members: Mapping[str, Any] | None = None,
) -> EventualJudgement:
    """All three checks. ``states``: per member ``{key: [document or None, stamps]}``
    (tombstones have document None); the first member's is taken as the final state."""
    writes = writes_of(records)
    first = states[sorted(states)[0]] if states else {}
    final = {k: doc for k, (doc, _) in first.items() if doc is not None}
    stamps = {k: st for k, (_, st) in first.items()}
    convergence = check_convergence(states, seconds, bound)
    lost = check_lost(writes, final, stamps)
    origin = check_origin(records, writes, final, stamps)
    monotonic = check_monotonic(writes)
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        if record.type != "invoke":
            kinds = counts.setdefault(record.f, {})
            kinds[record.type] = kinds.get(record.type, 0) + 1
    valid = all(c.valid for c in (convergence, lost, origin, monotonic)) and bool(states)
    verdict: Overall = "valid" if valid else "invalid"
    return EventualJudgement(
        verdict,
        convergence,
        lost,
        origin,
        monotonic,
        dict(sorted(counts.items())),
        dict(members or {}),
    )
