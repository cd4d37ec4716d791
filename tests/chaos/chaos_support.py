"""Builders of histories for the checker tests: by hand, and from simulated runs."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from amber.chaos.history import Function, Record, RecordType


def op(  # noqa: PLR0917 - reads like a history line: who, what, when
    process: int,
    f: Function,
    key: str,
    value: Any,
    call: float,
    ret: float | None,
    outcome: RecordType = "ok",
    output: Any = None,
) -> list[Record]:
    """The records of one call: invoke at ``call``; completion at ``ret`` unless ``None``.

    A read's completion carries ``output``; other functions echo ``value``.
    """
    records = [Record(process, "invoke", f, key, value if f != "read" else None, call)]
    if ret is not None:
        result = output if f in ("read", "read-set") else value
        records.append(Record(process, outcome, f, key, result, ret))
    return records


def history(*calls: list[Record]) -> list[Record]:
    """Interleave calls' records by time, as a harness would have logged them."""
    return sorted((r for call in calls for r in call), key=lambda r: r.time)


@dataclass
class _Planned:
    process: int
    f: Function
    key: str
    value: Any
    call: float
    point: float  # when it takes effect: inside [call, ret]
    ret: float
    outcome: RecordType = "ok"
    output: Any = None


def simulate(
    seed: int,
    *,
    processes: int = 10,
    per_process: int = 200,
    keys: int = 8,
    info_rate: float = 0.0,
    final_reads: bool = False,
) -> list[Record]:
    """A linearizable history of a real register store with random concurrency.

    Each process runs calls back to back with random durations; each call
    takes effect at a random instant inside its interval, and the register
    model applied in that order gives every result. An ``info`` call takes
    effect or not, at random. With ``final_reads``, a last process reads
    every key after everything else returned, as the harness does after healing.
    """
    rng = random.Random(seed)
    planned: list[_Planned] = []
    written = 0
    for process in range(processes):
        now = rng.random()
        for _ in range(per_process):
            key = f"k{rng.randrange(keys)}"
            call = now
            point = call + rng.expovariate(1 / 0.002)
            ret = point + rng.expovariate(1 / 0.002)
            now = ret + rng.expovariate(1 / 0.001)
            roll = rng.random()
            if roll < 0.45:
                planned.append(_Planned(process, "read", key, None, call, point, ret))
                continue
            written += 1
            if roll < 0.8:
                planned.append(_Planned(process, "write", key, written, call, point, ret))
            else:
                # The expected value is filled in from the model, or missed on purpose.
                planned.append(_Planned(process, "cas", key, [None, written], call, point, ret))
    registers: dict[str, Any] = {}
    for p in sorted(planned, key=lambda p: p.point):
        current = registers.get(p.key)
        if p.f == "read":
            p.output = current
        elif p.f == "cas":
            expected = current if rng.random() < 0.7 else -1
            p.value = [expected, p.value[1]]
            if expected != current:
                p.outcome = "fail"
        if p.f != "read" and p.outcome != "fail" and rng.random() < info_rate:
            p.outcome = "info"
            if rng.random() < 0.5:
                continue  # it never took effect
        if p.f == "write" or (p.f == "cas" and p.outcome != "fail"):
            registers[p.key] = p.value if p.f == "write" else p.value[1]
    calls = [
        op(p.process, p.f, p.key, p.value, p.call, p.ret, p.outcome, p.output) for p in planned
    ]
    if final_reads:
        end = max(p.ret for p in planned) + 1
        calls += [
            op(
                processes,
                "read",
                f"k{k}",
                None,
                end + k,
                end + k + 0.5,
                output=registers.get(f"k{k}"),
            )
            for k in range(keys)
        ]
    return history(*calls)
