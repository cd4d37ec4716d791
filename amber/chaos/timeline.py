"""``timeline.png``: every operation of a run on a time axis, faults shaded.

One row per process; each operation is a short horizontal bar from its
invocation to its completion, coloured by outcome (ok, fail, info); the
fault windows are shaded behind, one colour per nemesis, labelled with the
nodes they hit. matplotlib with the Agg backend (no display needed); it is
imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .history import Record

__all__ = ["plot_timeline"]

_OUTCOME_COLOURS = {"ok": "#2a9d3a", "fail": "#d62728", "info": "#ff9f1c"}
_FAULT_COLOURS = {
    "kill": "#d62728",
    "pause": "#1f77b4",
    "partition": "#9467bd",
    "membership": "#8c564b",
    "crash": "#ff7f0e",
}


def plot_timeline(
    records: Sequence[Record],
    faults: Sequence[dict[str, Any]],
    path: Path,
    *,
    title: str = "amber chaos",
    end: float | None = None,
) -> None:
    """Draw the run; ``faults`` are :meth:`FaultRecord.to_json` objects."""
    import matplotlib  # noqa: PLC0415 - heavy, and only needed here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    last = max((r.time for r in records), default=1.0)
    end = max(end or 0.0, last)
    processes = sorted({r.process for r in records})
    row = {p: i for i, p in enumerate(processes)}
    segments: dict[str, list[tuple[float, float, int]]] = {k: [] for k in _OUTCOME_COLOURS}
    open_: dict[int, Record] = {}
    for record in records:
        if record.type == "invoke":
            open_[record.process] = record
            continue
        invoke = open_.pop(record.process, None)
        if invoke is not None:
            segments[record.type].append((invoke.time, record.time, row[record.process]))
    for invoke in open_.values():
        segments["info"].append((invoke.time, end, row[invoke.process]))

    fig, ax = plt.subplots(figsize=(14, 1.5 + 0.35 * max(len(processes), 4)), dpi=100)
    shaded: set[str] = set()
    for fault in faults:
        start, healed = fault.get("applied_at"), fault.get("healed_at")
        if start is None:
            continue
        healed = end if healed is None else healed
        kind = fault["kind"]
        ax.axvspan(start, healed, color=_FAULT_COLOURS.get(kind, "grey"), alpha=0.15, lw=0)
        shaded.add(kind)
        label = f"{kind} {','.join(fault.get('nodes') or [])}"
        ax.text(start, len(processes) - 0.4, label, fontsize=7, rotation=90, va="top")
    for kind, parts in segments.items():
        if parts:
            ax.hlines(
                [y for _, _, y in parts],
                [a for a, _, _ in parts],
                [max(b, a + 0.01) for a, b, _ in parts],
                colors=_OUTCOME_COLOURS[kind],
                linewidth=4,
                label=kind,
            )
    ax.set_yticks(range(len(processes)), [f"p{p}" for p in processes])
    ax.set_xlim(0, end)
    ax.set_ylim(-0.7, len(processes) - 0.3)
    ax.set_xlabel("seconds")
    ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=_FAULT_COLOURS[k], alpha=0.3, label=k) for k in _FAULT_COLOURS if k in shaded
    ]
    ax.legend(handles=handles, loc="upper right", fontsize=8, ncols=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
