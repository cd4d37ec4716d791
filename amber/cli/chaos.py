"""``amber chaos``: fault injection and consistency checking against a local cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app, console, fail

#: Exit codes: 0 valid, 1 a violation, 2 unknown (a check ran out of budget), 3 the harness failed.
HARNESS_FAILED = 3


@app.command()
def chaos(  # noqa: PLR0917 - typer maps parameters to options
    out: Annotated[Path, typer.Option(help="Folder for history.jsonl, report.json, ….")] = Path(
        "chaos-run"
    ),
    nodes: Annotated[int, typer.Option(help="Cluster size.")] = 3,
    seconds: Annotated[float, typer.Option(help="How long the workload and faults run.")] = 60.0,
    nemesis: Annotated[
        str,
        typer.Option(
            help="Comma-separated: kill, pause, partition, membership; or crash (--nodes 1)."
        ),
    ] = "kill,pause,partition,membership",
    clients: Annotated[int, typer.Option(help="Concurrent client processes.")] = 10,
    keys: Annotated[int, typer.Option(help="Registers (keys r:k0 …).")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the fault schedule and the workload.")] = 7,
    rate: Annotated[float, typer.Option(help="Operations per second per client, at most.")] = 10.0,
    durability: Annotated[
        str, typer.Option(help="The servers' --durability: always, interval or never.")
    ] = "always",
    check_budget: Annotated[
        float, typer.Option(help="Seconds the linearizability search may take.")
    ] = 60.0,
    recheck: Annotated[
        bool,
        typer.Option(help="Do not run: judge OUT/history.jsonl and OUT/watch.json again."),
    ] = False,
) -> None:
    """Run a real cluster under faults, then check what its clients saw.

    Starts NODES amber serve processes on loopback, runs read / write /
    compare-and-set clients on KEYS registers plus a set-add workload, and
    one watch per node, while the nemesis kills (SIGKILL + restart), pauses
    (SIGSTOP/SIGCONT), partitions (per-link TCP proxies) and removes and
    re-adds members, on a schedule fixed by SEED. Then it heals everything,
    waits for recovery, reads the final state, and checks linearizability
    (per key), durability (acknowledged writes and set-adds survive) and
    watch consistency (gap-free, identical on every node, replays to the
    final state). Writes OUT/history.jsonl, OUT/report.json, OUT/watch.json
    and OUT/timeline.png.

    With --nodes 1 --nemesis crash it runs one plain (non-cluster) server instead,
    through a test hook (AMBER_TEST_VOLATILE_FILES=1, not a user setting)
    that keeps its un-fsynced log bytes in memory, and SIGKILLs and restarts
    it: each kill loses what a power cut would. With --durability always
    no acknowledged write may be lost; with never, losses are expected and
    reported.

    Exit code: 0 valid, 1 a violation was found, 2 unknown (the
    linearizability search ran out of its budget), 3 the harness failed.
    """
    from amber.chaos.verdict import EXIT_CODES  # noqa: PLC0415
    from amber.chaos.verdict import recheck as judge_again  # noqa: PLC0415

    if recheck:
        if not (out / "history.jsonl").exists():
            fail(f"no history.jsonl in {out}", HARNESS_FAILED)
        judgement = judge_again(out, budget=check_budget)
        console.print(judgement.describe(), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CODES[judgement.verdict])

    from amber.chaos.harness import ChaosOptions, run  # noqa: PLC0415

    try:
        options = ChaosOptions(
            out,
            nodes=nodes,
            seconds=seconds,
            nemesis=tuple(n.strip() for n in nemesis.split(",") if n.strip()),
            clients=clients,
            keys=keys,
            seed=seed,
            rate=rate,
            check_budget=check_budget,
            durability=durability,
        )
    except ValueError as exc:
        fail(str(exc), HARNESS_FAILED)
    try:
        result = run(options, log=lambda line: console.print(line, highlight=False))
    except (RuntimeError, OSError) as exc:
        fail(f"the chaos run failed: {exc}", HARNESS_FAILED)
    judgement = result.judgement
    console.print(judgement.describe(), highlight=False, soft_wrap=True)
    console.print(
        f"{judgement.checked_operations} operations checked, {result.faults_injected} faults "
        f"injected, {result.timings['total']:.0f}s; files in {out}",
        highlight=False,
    )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    raise typer.Exit(EXIT_CODES[judgement.verdict])
