"""Watch consistency: every node tells the same, complete story of the changes.

Input: per node, the events its (unfiltered, all-tables) watch delivered, in
delivery order, each ``{"revision", "table", "key", "type", "value"}`` with
``type`` in ``put | merge | delete | expire``; and the final state the run
read back, ``{key: value}``. One transaction is several events sharing a
revision. The checks:

1. **gap-free and ordered**, per node: revisions never go down, a revision's
   events are contiguous, and no revision between the node's first and last
   is missing (a batch that changes anything takes the next revision, so an
   unfiltered watch sees them all);
2. **identical across nodes**: each revision that several nodes saw holds
   the same events, in the same order, on all of them;
3. **replay**: the union of the streams must cover ``first_revision`` up to
   its last revision with no hole; replaying it from an empty state (``put``
   sets, ``merge`` applies the RFC 7396 patch, ``delete``/``expire``
   remove) gives exactly ``final_state``.

**Shards.** Each Raft group has its own revisions, so
:func:`check_groups` runs the checks per group, over its members' streams.
Slots move between groups: a group's stream holds the keys it served at
any time (a key moved in arrives as a ``put`` of the copied value at the
target, since the copy is written through its log; the copies the old
owner drops afterwards are silent), so the replay of a group is compared
with the final state only on the keys that group serves at the end
(``owned``), and every key of the final state must be served by some
group. Unsharded runs pass no ``owned``: the check is unchanged.

A ``merge`` event's value is taken as the patch; pass
``merge_values="result"`` if the stream carries the value after the merge
(as Amber's :class:`~amber.watch.Event` ``value`` does), which then replays
like a ``put``.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidArgument
from ..model import json_equal, merge_patch, thaw

__all__ = ["WatchProblem", "WatchResult", "check_groups", "check_watch"]

_TYPES = frozenset({"put", "merge", "delete", "expire"})
#: Problems of one kind listed per node before the rest are only counted.
_SHOWN = 5

#: ``(table, key, type, value)``: one event without its revision.
_Change = tuple[str, str, str, Any]


@dataclass(frozen=True, slots=True)
class WatchProblem:
    """One inconsistency: ``kind`` is ``order``, ``gap``, ``divergence``,
    ``coverage`` or ``replay``; ``node`` is ``None`` for whole-run problems."""

    kind: str
    node: str | None
    message: str

    def describe(self) -> str:
        """One line for a report."""
        where = f"node {self.node}: " if self.node is not None else ""
        return f"{self.kind}: {where}{self.message}"

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {"kind": self.kind, "node": self.node, "message": self.message}


@dataclass(frozen=True, slots=True)
class WatchResult:
    """The outcome; ``ranges`` maps each node to its ``(first, last)`` revision
    (``None`` for an empty stream)."""

    ranges: dict[str, tuple[int, int] | None]
    events: int
    problems: list[WatchProblem] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        """Whether all checks passed."""
        return not self.problems

    def describe(self) -> str:
        """A report paragraph."""
        verdict = "ok" if self.valid else f"{len(self.problems)} problems"
        lines = [f"watch: {verdict} ({self.events} events from {len(self.ranges)} nodes)"]
        lines.extend(f"  {p.describe()}" for p in self.problems)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """A JSON object for ``report.json``."""
        return {
            "valid": self.valid,
            "events": self.events,
            "ranges": {n: list(r) if r else None for n, r in self.ranges.items()},
            "problems": [p.to_json() for p in self.problems],
        }


def _parse(event: Any, where: str) -> tuple[int, _Change]:
    if not isinstance(event, Mapping):
        raise InvalidArgument(f"{where}: an event must be an object, got {event!r}")
    try:
        revision, table, key, kind = event["revision"], event["table"], event["key"], event["type"]
    except KeyError as exc:
        raise InvalidArgument(f"{where}: event has no {exc.args[0]!r}") from exc
    if type(revision) is not int or kind not in _TYPES:
        raise InvalidArgument(f"{where}: bad revision or type in {dict(event)!r}")
    return revision, (table, key, kind, event.get("value"))


def _same(a: list[_Change], b: list[_Change]) -> bool:
    return len(a) == len(b) and all(
        x[:3] == y[:3] and json_equal(x[3], y[3]) for x, y in zip(a, b, strict=True)
    )


def _show(changes: list[_Change]) -> str:
    return json.dumps([list(c) for c in changes])


def check_watch(
    streams: Mapping[str, Sequence[Mapping[str, Any]]],
    final_state: Mapping[str, Any],
    *,
    table: str | None = None,
    first_revision: int = 1,
    merge_values: Literal["patch", "result"] = "patch",
    owned: Collection[str] | None = None,
) -> WatchResult:
    """Run the three checks of the module doc on ``streams`` (node name -> events).

    ``final_state`` is keyed by key alone, so when the events span several
    tables pass ``table`` to say which one it describes (the other tables
    still go through checks 1 and 2). With ``owned`` (the keys of ``table``
    the streams' group serves at the end) the replay is compared on those
    keys only. Malformed events raise :class:`~amber.errors.InvalidArgument`.
    """
    if owned is not None:
        final_state = {k: v for k, v in final_state.items() if k in owned}
    problems: list[WatchProblem] = []
    ranges: dict[str, tuple[int, int] | None] = {}
    union: dict[int, tuple[str, list[_Change]]] = {}
    total = 0
    for node, events in streams.items():
        revisions: dict[int, list[_Change]] = {}
        last = None
        issues = {"order": 0, "gap": 0}
        for position, raw in enumerate(events):
            revision, change = _parse(raw, f"node {node} event {position}")
            total += 1
            if last is not None and revision != last:
                kind, message = "", ""
                if revision < last or revision in revisions:
                    kind = "order"
                    message = f"event {position} has revision {revision} after {last}"
                elif revision > last + 1:
                    kind = "gap"
                    message = f"revisions {_span(last + 1, revision - 1)} missing"
                if kind:
                    issues[kind] += 1
                    if issues[kind] <= _SHOWN:
                        problems.append(WatchProblem(kind, node, message))
            revisions.setdefault(revision, []).append(change)
            last = revision
        for kind, count in issues.items():
            if count > _SHOWN:
                problems.append(WatchProblem(kind, node, f"... {count - _SHOWN} more"))
        ranges[node] = (min(revisions), max(revisions)) if revisions else None
        _merge_into(union, node, revisions, problems)
    if union:
        problems.extend(_coverage(union, first_revision))
        problems.extend(_replay(union, final_state, table, merge_values, owned))
    elif final_state:
        problems.append(WatchProblem("replay", None, "no events, but the final state is not empty"))
    return WatchResult(ranges, total, problems)


def _span(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}..{high}"


def _merge_into(
    union: dict[int, tuple[str, list[_Change]]],
    node: str,
    revisions: dict[int, list[_Change]],
    problems: list[WatchProblem],
) -> None:
    """Add a node's revisions to the union, reporting where it disagrees with earlier nodes."""
    diverged: dict[str, list[int]] = {}
    for revision, changes in revisions.items():
        seen = union.get(revision)
        if seen is None:
            union[revision] = (node, changes)
        elif not _same(seen[1], changes):
            first = diverged.setdefault(seen[0], [])
            first.append(revision)
            if len(first) == 1:
                problems.append(
                    WatchProblem(
                        "divergence",
                        node,
                        f"revision {revision} is {_show(changes)} here "
                        f"but {_show(seen[1])} on node {seen[0]}",
                    )
                )
    for other, bad in diverged.items():
        if len(bad) > 1:
            problems.append(
                WatchProblem(
                    "divergence", node, f"differs from node {other} on {len(bad)} revisions"
                )
            )


def _coverage(
    union: dict[int, tuple[str, list[_Change]]], first_revision: int
) -> list[WatchProblem]:
    """Holes that no node's stream fills: the replay cannot be trusted across them."""
    problems: list[WatchProblem] = []
    expected = first_revision
    for revision in sorted(union):
        if revision > expected:
            problems.append(
                WatchProblem(
                    "coverage", None, f"no node saw revisions {_span(expected, revision - 1)}"
                )
            )
        expected = max(expected, revision + 1)
    return problems


def _replay(
    union: dict[int, tuple[str, list[_Change]]],
    final_state: Mapping[str, Any],
    table: str | None,
    merge_values: Literal["patch", "result"],
    owned: Collection[str] | None = None,
) -> list[WatchProblem]:
    tables = sorted({c[0] for _, changes in union.values() for c in changes})
    if table is None and len(tables) > 1:
        raise InvalidArgument(
            f"events span tables {', '.join(map(repr, tables))}: pass table= to say "
            "which one final_state describes"
        )
    state: dict[str, Any] = {}
    for revision in sorted(union):
        for event_table, key, kind, value in union[revision][1]:
            if table is not None and event_table != table:
                continue
            if kind == "put" or (kind == "merge" and merge_values == "result"):
                state[key] = value
            elif kind == "merge":
                state[key] = thaw(merge_patch(state.get(key), value))
            else:
                state.pop(key, None)
    if owned is not None:
        state = {k: v for k, v in state.items() if k in owned}
    missing = sorted(state.keys() - final_state.keys())
    extra = sorted(final_state.keys() - state.keys())
    differ = sorted(
        k for k in state.keys() & final_state.keys() if not json_equal(state[k], final_state[k])
    )
    problems: list[WatchProblem] = []
    if missing:
        problems.append(
            WatchProblem("replay", None, f"replay has keys the final state lacks: {missing[:10]}")
        )
    if extra:
        problems.append(
            WatchProblem("replay", None, f"final state has keys the replay lacks: {extra[:10]}")
        )
    problems.extend(
        WatchProblem(
            "replay",
            None,
            f"key {k!r}: replay gives {json.dumps(state[k])}, "
            f"final state holds {json.dumps(final_state[k])}",
        )
        for k in differ[:10]
    )
    if len(differ) > 10:
        problems.append(WatchProblem("replay", None, f"... {len(differ) - 10} more keys differ"))
    return problems


def check_groups(
    streams: Mapping[str, Sequence[Mapping[str, Any]]],
    final_state: Mapping[str, Any],
    groups: Mapping[str, str],
    owners: Mapping[str, str],
    *,
    table: str | None = None,
    merge_values: Literal["patch", "result"] = "patch",
) -> WatchResult:
    """:func:`check_watch` per Raft group of a sharded run; see the module doc.

    ``groups`` names each node's group, ``owners`` the group that serves
    each key of ``final_state`` at the end.
    """
    ranges: dict[str, tuple[int, int] | None] = {}
    problems: list[WatchProblem] = []
    events = 0
    unowned = sorted(k for k in final_state if k not in owners)
    if unowned:
        problems.append(
            WatchProblem("replay", None, f"no group serves final-state keys {unowned[:10]}")
        )
    for group in sorted(set(groups.values())):
        result = check_watch(
            {node: s for node, s in streams.items() if groups.get(node) == group},
            final_state,
            table=table,
            merge_values=merge_values,
            owned={k for k, g in owners.items() if g == group},
        )
        ranges.update(result.ranges)
        events += result.events
        problems.extend(
            p if p.node is not None else WatchProblem(p.kind, None, f"group {group}: {p.message}")
            for p in result.problems
        )
    strays = sorted(set(streams) - set(groups))
    if strays:
        problems.append(WatchProblem("coverage", None, f"streams of no known group: {strays}"))
    return WatchResult(ranges, events, problems)
