"""Judge a finished run: every checker over the history and the watch streams, one verdict.

Pure: :func:`judge` takes the records, the watch streams and the final state
and returns a :class:`Judgement`; ``amber chaos`` writes it to
``report.json`` and ``amber chaos --recheck DIR`` recomputes it from the
files a run left (``history.jsonl`` and ``watch.json``).

The overall verdict is ``invalid`` if any checker found a violation,
``unknown`` if none did but the linearizability search ran out of budget
on some key (or nothing was checked at all), else ``valid``. The CLI exits
0, 1 and 2 for them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import durability, linearizable, watchcheck
from .history import Record, pair, read_history

__all__ = ["EXIT_CODES", "Judgement", "Overall", "judge", "load_watch", "recheck", "save_watch"]

Overall = Literal["valid", "invalid", "unknown"]
EXIT_CODES: dict[Overall, int] = {"valid": 0, "invalid": 1, "unknown": 2}


@dataclass(frozen=True, slots=True)
class Judgement:
    """The checkers' results and the verdict they add up to."""

    verdict: Overall
    linearizability: linearizable.LinearizabilityResult
    registers: durability.DurabilityResult
    sets: durability.DurabilityResult
    watch: watchcheck.WatchResult
    #: Nodes whose watch stream was left out, and why (``Compacted`` on resume).
    skipped_streams: dict[str, str]
    operations: dict[str, dict[str, int]]

    @property
    def checked_operations(self) -> int:
        return self.linearizability.operations

    def describe(self) -> str:
        """The human report: one paragraph per checker, then the verdict."""
        parts = [
            self.linearizability.describe(),
            "registers " + self.registers.describe(),
            "set " + self.sets.describe(),
            self.watch.describe(),
        ]
        parts.extend(
            f"  watch stream of {node} left out: {why}"
            for node, why in sorted(self.skipped_streams.items())
        )
        parts.append(f"verdict: {self.verdict.upper()}")
        return "\n".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "operations": self.operations,
            "linearizability": self.linearizability.to_json()
            | {"violations": [v.to_json() for v in self.linearizability.violations]},
            "durability": {"registers": self.registers.to_json(), "sets": self.sets.to_json()},
            "watch": self.watch.to_json() | {"skipped_streams": self.skipped_streams},
        }


def judge(
    records: Sequence[Record],
    streams: Mapping[str, Sequence[Mapping[str, Any]]],
    final_state: Mapping[str, Any],
    *,
    table: str = "r",
    skipped_streams: Mapping[str, str] | None = None,
    budget: float = 60.0,
    groups: Mapping[str, str] | None = None,
    owners: Mapping[str, str] | None = None,
) -> Judgement:
    """Run the linearizability, durability and watch checkers; see the module doc.

    A sharded run passes ``groups`` (node -> Raft group) and ``owners`` (key
    -> the group serving it at the end): the watch streams are then checked
    per group (:func:`~amber.chaos.watchcheck.check_groups`).
    """
    operations = pair(records)
    lin = linearizable.check(operations, budget=budget)
    registers = durability.check_registers(operations)
    sets = durability.check_sets(records)
    if groups:
        watch = watchcheck.check_groups(
            streams, final_state, groups, owners or {}, table=table, merge_values="result"
        )
    else:
        watch = watchcheck.check_watch(streams, final_state, table=table, merge_values="result")
    counts: dict[str, Counter[str]] = {}
    for record in records:
        if record.type != "invoke":
            counts.setdefault(record.f, Counter())[record.type] += 1
    verdict: Overall
    if not (lin.valid or lin.verdict == "unknown") or not (
        registers.valid and sets.valid and watch.valid
    ):
        verdict = "invalid"
    elif lin.verdict == "unknown" or lin.operations == 0:
        verdict = "unknown"
    else:
        verdict = "valid"
    return Judgement(
        verdict,
        lin,
        registers,
        sets,
        watch,
        dict(skipped_streams or {}),
        {f: dict(c) for f, c in sorted(counts.items())},
    )


def save_watch(
    path: Path,
    streams: Mapping[str, Sequence[Mapping[str, Any]]],
    final_state: Mapping[str, Any],
    skipped_streams: Mapping[str, str],
    final_revision: int | dict[str, int] | None,
    *,
    groups: Mapping[str, str] | None = None,
    owners: Mapping[str, str] | None = None,
) -> None:
    """Write ``watch.json``: what :func:`recheck` needs besides the history.

    A sharded run's ``final_revision`` is one per group.
    """
    document = {
        "final_revision": final_revision,
        "groups": dict(groups or {}),
        "owners": dict(owners or {}),
        "final_state": dict(final_state),
        "skipped_streams": dict(skipped_streams),
        "streams": {node: list(events) for node, events in streams.items()},
    }
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n")


def load_watch(path: Path) -> dict[str, Any]:
    """Read ``watch.json`` (see :func:`save_watch`)."""
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def recheck(folder: Path, *, budget: float = 60.0) -> Judgement:
    """Judge the files a run left in ``folder`` again (``history.jsonl``, ``watch.json``)."""
    records = read_history(folder / "history.jsonl")
    watch_file = folder / "watch.json"
    watch = load_watch(watch_file) if watch_file.exists() else {}
    return judge(
        records,
        watch.get("streams", {}),
        watch.get("final_state", {}),
        skipped_streams=watch.get("skipped_streams", {}),
        budget=budget,
        groups=watch.get("groups") or None,
        owners=watch.get("owners") or None,
    )
