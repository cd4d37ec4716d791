"""Linearizability of per-key registers: Wing-Gong search, Lowe's cache, Porcupine's list.

The model is one register per key, initially ``None``:

- ``read`` returns the register's value (``None`` if never written);
- ``write v`` sets it;
- ``cas [expected, new]`` sets it to ``new`` if it holds ``expected`` and
  fails otherwise. A cas that completed ``fail`` is dropped by
  :func:`~amber.chaos.history.pair`, so every cas here *succeeded* if it
  took effect at all.

A history is linearizable if some total order of its operations respects
real time (an operation that returned before another was invoked comes
first) and replays correctly on the model. Operations whose outcome is
unknown (``info``) may take effect at any time after their invocation or
never; ``info`` reads constrain nothing and are dropped, and so are
``info`` writes whose value no read returned and no cas expected (leaving
them out never makes a linearization invalid).

How the search works (Wing & Gong 1993; Lowe 2017; Porcupine):

- **P-compositionality**: linearizability is local, so each key is checked
  on its own, which keeps the exponential search small.
- **Just-in-time linearization**: invocations and returns sit in one list
  ordered by time. Walking it, each invocation met is tried as the next
  operation to take effect; meeting a *return* means that operation had to
  be linearized already, so the search backtracks. A linearized operation is
  lifted out of the list (dancing links: no allocation, O(1) undo).
- **Lowe's memoization**: the pair (set of linearized operations as an int
  bitset, kept as a sliding window, and register state) is remembered;
  reaching a known pair again cannot succeed where it failed before, so
  that branch is cut.

Values are interned to small ints (by canonical JSON) so a model step is an
int compare. Equal timestamps count as concurrent. A time budget covers the
whole check: keys not finished in time come out ``unknown``, never a hang.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .history import Operation, Record, by_key, pair

__all__ = [
    "KeyResult",
    "LinearizabilityResult",
    "Verdict",
    "Violation",
    "check",
    "check_history",
    "check_key",
]

Verdict = Literal["linearizable", "not linearizable", "unknown"]

_READ, _WRITE, _CAS = 0, 1, 2
_KINDS = {"read": _READ, "write": _WRITE, "cas": _CAS}
#: Clock reads are a syscall; the deadline is checked once per this many steps (+1).
_CLOCK_MASK = 0x3FF


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a key's history is not linearizable, for a human.

    ``linearized`` is the longest prefix the search could order (in that
    order) and ``state`` the register after it. ``stuck`` is the operation
    whose return came next in real time: it had to have taken effect by then,
    but none of ``candidates`` (the operations invoked and not yet ordered
    at that point, ``stuck`` included) can come next.
    """

    key: str
    linearized: tuple[Operation, ...]
    state: Any
    stuck: Operation
    candidates: tuple[Operation, ...]

    def describe(self, last: int = 5) -> str:
        """A few lines for a report: the prefix's tail, the state, what could not fit."""
        lines = [f"key {self.key!r}: longest linearizable prefix has {len(self.linearized)} ops"]
        if self.linearized:
            shown = self.linearized[-last:]
            if len(shown) < len(self.linearized):
                lines.append(f"  ... its last {len(shown)}:")
            lines.extend(f"    {op.describe()}" for op in shown)
        lines.append(f"  register after it: {json.dumps(self.state)}")
        lines.append(
            f"  {self.stuck.describe()} returned at {self.stuck.ret:.6f}, "
            "but no pending operation can take effect next:"
        )
        lines.extend(f"    {op.describe()}: {_why_not(op, self.state)}" for op in self.candidates)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "key": self.key,
            "linearized": [op.to_json() for op in self.linearized],
            "state": self.state,
            "stuck": self.stuck.to_json(),
            "candidates": [op.to_json() for op in self.candidates],
        }


def _why_not(op: Operation, state: Any) -> str:
    if op.f == "read" and not _same(op.output, state):
        return f"reads {json.dumps(op.output)}, register holds {json.dumps(state)}"
    if op.f == "cas" and not _same(op.value[0], state):
        return f"expects {json.dumps(op.value[0])}, register holds {json.dumps(state)}"
    return "fits, but every continuation from there was explored and failed"


def _same(a: Any, b: Any) -> bool:
    return _canonical(a) == _canonical(b)


def _canonical(value: Any) -> str:
    """The interning key: JSON with sorted members (so ``1`` and ``1.0`` differ)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key; ``violation`` is set iff it is not linearizable."""

    key: str
    verdict: Verdict
    operations: int
    seconds: float
    violation: Violation | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "key": self.key,
            "verdict": self.verdict,
            "operations": self.operations,
            "seconds": round(self.seconds, 6),
            "violation": None if self.violation is None else self.violation.to_json(),
        }


@dataclass(frozen=True, slots=True)
class LinearizabilityResult:
    """The whole check: ``not linearizable`` if any key is, else ``unknown`` if any
    key ran out of budget, else ``linearizable``."""

    verdict: Verdict
    keys: dict[str, KeyResult]
    operations: int
    seconds: float
    violations: list[Violation] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Whether the history was proven linearizable."""
        return self.verdict == "linearizable"

    def describe(self) -> str:
        """A report paragraph: the verdict, counts, and each violation explained."""
        counts = {v: sum(r.verdict == v for r in self.keys.values()) for v in _VERDICTS}
        lines = [
            f"linearizability: {self.verdict} ({self.operations} operations on "
            f"{_count(len(self.keys), 'key')} in {self.seconds:.2f}s; "
            + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
            + ")"
        ]
        unknown = sorted(k for k, r in self.keys.items() if r.verdict == "unknown")
        if unknown:
            lines.append(f"  out of time budget on: {', '.join(map(repr, unknown))}")
        lines.extend(v.describe() for v in self.violations)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "verdict": self.verdict,
            "operations": self.operations,
            "seconds": round(self.seconds, 6),
            "keys": {key: result.to_json() for key, result in self.keys.items()},
        }


_VERDICTS: tuple[Verdict, ...] = ("linearizable", "not linearizable", "unknown")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def check_history(
    records: Iterable[Record],
    *,
    budget: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> LinearizabilityResult:
    """:func:`check` the register operations of a raw history (see :func:`pair`)."""
    return check(pair(records), budget=budget, clock=clock)


def check(
    operations: Iterable[Operation],
    *,
    budget: float = 60.0,
    clock: Callable[[], float] = time.monotonic,
) -> LinearizabilityResult:
    """Check every key's register history; at most ``budget`` seconds in all.

    Only ``read``/``write``/``cas`` operations are considered (set workloads
    are the durability checker's). Keys are checked smallest first, so a
    tight budget still settles as many keys as it can; a key whose search is
    cut short, or that was not reached, is ``unknown``. ``clock`` is
    injectable for tests.
    """
    start = clock()
    deadline = start + budget
    parts = by_key(op for op in operations if op.f in _KINDS)
    results: dict[str, KeyResult] = {}
    for key in sorted(parts, key=lambda k: (len(parts[k]), k)):
        results[key] = check_key(key, parts[key], deadline=deadline, clock=clock)
    keys = dict(sorted(results.items()))
    violations = [r.violation for r in keys.values() if r.violation is not None]
    verdicts = {r.verdict for r in keys.values()}
    verdict: Verdict = (
        "not linearizable"
        if "not linearizable" in verdicts
        else "unknown"
        if "unknown" in verdicts
        else "linearizable"
    )
    return LinearizabilityResult(
        verdict,
        keys,
        sum(r.operations for r in keys.values()),
        clock() - start,
        violations,
    )


def check_key(
    key: str,
    operations: Sequence[Operation],
    *,
    deadline: float = math.inf,
    clock: Callable[[], float] = time.monotonic,
) -> KeyResult:
    """Check one key's register operations (all of ``key``) until ``deadline``."""
    start = clock()
    ops = [op for op in operations if op.known or op.f != "read"]
    if start >= deadline:
        return KeyResult(key, "unknown", len(ops), 0.0)
    search = _Search(_prune(ops))
    outcome = search.run(deadline, clock)
    verdict: Verdict = (
        "unknown" if outcome is None else "linearizable" if outcome else "not linearizable"
    )
    violation = search.violation(key) if outcome is False else None
    return KeyResult(key, verdict, len(ops), clock() - start, violation)


def _prune(ops: list[Operation]) -> list[Operation]:
    """Drop the unknown-outcome writes whose value nothing ever observed.

    Such a write may be left out of any linearization: no read returns its
    value and no cas expects it, so the next read or cas must follow another
    write anyway, and that write alone gives the same state. Without this
    every timed-out write stays pending to the end of the search and is
    walked past at every step.
    """
    observed = {
        _canonical(op.output if op.f == "read" else op.value[0])
        for op in ops
        if op.f == "cas" or (op.f == "read" and op.known)
    }
    return [
        op
        for op in ops
        if op.known
        or op.f == "read"
        or _canonical(op.value[1] if op.f == "cas" else op.value) in observed
    ]


#: One linearized operation on the search stack: ``(op, configuration before
#: it, the frame below)``. Frames are immutable, so pushing is one tuple and
#: the deepest stack seen is kept for the explanation by reference.
_Frame = tuple[int, tuple[int, int, int], "_Frame | None"]


class _Search:
    """The search state for one key; see the module doc for the algorithm.

    Entry ``2*i`` is the invocation of operation ``i``, ``2*i + 1`` its
    return; ``head``/``tail`` are sentinels, so unlinking needs no checks.
    """

    def __init__(self, ops: list[Operation]) -> None:
        # Numbered by invocation: the cache key's window relies on it.
        self.ops = ops = sorted(ops, key=lambda op: op.call)
        n = len(ops)
        values: dict[str, int] = {_canonical(None): 0}
        self.values: list[Any] = [None]

        def intern(value: Any) -> int:
            canonical = _canonical(value)
            number = values.get(canonical)
            if number is None:
                number = values[canonical] = len(self.values)
                self.values.append(value)
            return number

        self.kind = [_KINDS[op.f] for op in ops]
        self.arg = [
            intern(op.output if op.f == "read" else op.value[0] if op.f == "cas" else op.value)
            for op in ops
        ]
        self.new = [intern(op.value[1]) if op.f == "cas" else 0 for op in ops]
        self.unknown = [math.isinf(op.ret) for op in ops]
        # Invocations before returns at equal times: touching intervals overlap.
        order = sorted(
            [(op.call, 0, 2 * i) for i, op in enumerate(ops)]
            + [(op.ret, 1, 2 * i + 1) for i, op in enumerate(ops)]
        )
        self.head, self.tail = 2 * n, 2 * n + 1
        self.nxt = [0] * (2 * n + 2)
        self.prv = [0] * (2 * n + 2)
        previous = self.head
        for _, _, entry in order:
            self.nxt[previous] = entry
            self.prv[entry] = previous
            previous = entry
        self.nxt[previous] = self.tail
        self.prv[self.tail] = previous
        # The deepest point reached, for the explanation.
        self.best: _Frame | None = None
        self.best_state = 0
        self.best_stuck = -1
        self.best_candidates: list[int] = []

    def run(self, deadline: float, clock: Callable[[], float]) -> bool | None:
        """True: linearizable; False: not; None: the deadline passed first."""
        nxt, prv = self.nxt, self.prv
        kind, arg, new, unknown = self.kind, self.arg, self.new, self.unknown
        head, tail = self.head, self.tail
        # A configuration is (window, base, state): the linearized set is
        # "every op below base" plus window's bits (bit i = op base + i), with
        # base the lowest op not yet linearized. Ops are numbered by
        # invocation, so the window spans only the ops in flight and stays a
        # small int where a plain bitset would grow to one bit per op. The
        # form is canonical, so the tuple is Lowe's exact cache key, and the
        # stack keeps each previous one, so backtracking recomputes nothing.
        cache: set[tuple[int, int, int]] = set()
        frame: _Frame | None = None
        depth = 0
        config = (0, 0, 0)
        window = base = state = 0
        best_depth = -1
        steps = 0
        entry = nxt[head]
        if entry == tail:
            return True
        while True:
            steps += 1
            if not steps & _CLOCK_MASK and clock() >= deadline:
                return None
            if not entry & 1:  # an invocation: try it as the next to take effect
                op = entry >> 1
                k = kind[op]
                if k == _WRITE:
                    after = arg[op]
                elif state != arg[op]:  # a read or cas that does not fit the register
                    entry = nxt[entry]
                    continue
                else:
                    after = state if k == _READ else new[op]
                if op != base:
                    memo = (window | (1 << (op - base)), base, after)
                else:  # the lowest pending op: slide the window past the run of ones
                    bits = window | 1
                    run = (~bits & (bits + 1)).bit_length() - 1
                    memo = (bits >> run, base + run, after)
                if memo in cache:
                    entry = nxt[entry]
                    continue
                cache.add(memo)
                frame = (op, config, frame)
                depth += 1
                config = memo
                window, base, state = memo
                # Lift the invocation and its return out of the list.
                nxt[prv[entry]] = nxt[entry]
                prv[nxt[entry]] = prv[entry]
                ret = entry + 1
                nxt[prv[ret]] = nxt[ret]
                prv[nxt[ret]] = prv[ret]
                entry = nxt[head]
                if entry == tail:
                    return True
            else:  # a return: its operation should have been ordered by now
                op = entry >> 1
                if unknown[op]:
                    # Only never-returning operations are left, and they may
                    # never take effect: everything that must fit did.
                    return True
                if depth > best_depth:
                    best_depth = depth
                    self._remember(frame, state, entry)
                if frame is None:
                    return False
                op, config, frame = frame
                depth -= 1
                window, base, state = config
                # Unlift in reverse order of lifting (dancing links).
                ret = 2 * op + 1
                nxt[prv[ret]] = ret
                prv[nxt[ret]] = ret
                call = ret - 1
                nxt[prv[call]] = call
                prv[nxt[call]] = call
                entry = nxt[call]

    def _remember(self, frame: _Frame | None, state: int, entry: int) -> None:
        self.best = frame  # immutable frames: keeping the top keeps the whole prefix
        self.best_state = state
        self.best_stuck = entry >> 1
        candidates: list[int] = []
        walk = self.nxt[self.head]
        while walk != entry:
            if not walk & 1:
                candidates.append(walk >> 1)
            walk = self.nxt[walk]
        self.best_candidates = candidates

    def violation(self, key: str) -> Violation:
        prefix: list[int] = []
        frame = self.best
        while frame is not None:
            prefix.append(frame[0])
            frame = frame[2]
        ops = self.ops
        return Violation(
            key,
            tuple(ops[i] for i in reversed(prefix)),
            self.values[self.best_state],
            ops[self.best_stuck],
            tuple(ops[i] for i in self.best_candidates),
        )
