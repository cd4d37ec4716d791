"""``amber chaos``: fault injection and consistency checking against a local cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .app import app, console, fail

#: Exit codes: 0 valid, 1 a violation, 2 unknown (a check ran out of budget), 3 the harness failed.
HARNESS_FAILED = 3


@app.command()
def chaos(  # noqa: PLR0917 - typer maps parameters to options
    out: Annotated[Path, typer.Option(help="Folder for history.jsonl, report.json, ….")] = Path(
        "chaos-run"
    ),
    nodes: Annotated[
        int, typer.Option(help="Cluster size (with --shards: members per group).")
    ] = 3,
    shards: Annotated[
        int,
        typer.Option(help="Raft groups (Redis Cluster protocol when more than 1), up to 5."),
    ] = 1,
    seconds: Annotated[float, typer.Option(help="How long the workload and faults run.")] = 60.0,
    workload: Annotated[
        str,
        typer.Option(
            help="register (linearizable registers on strong tables) or eventual "
            "(puts, merges, deletes on an eventual, last-writer-wins table)."
        ),
    ] = "register",
    nemesis: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: kill, pause, partition, membership; reshard (--shards, "
            "no membership); crash (--nodes 1); clock-skew (--workload eventual). Default: "
            "kill,pause,partition,membership (with --shards: kill,pause,partition,reshard; "
            "with --workload eventual: kill,pause,partition,clock-skew).",
            show_default=False,
        ),
    ] = None,
    clients: Annotated[int, typer.Option(help="Concurrent client processes.")] = 10,
    keys: Annotated[int, typer.Option(help="Registers (keys r:k0 …; eventual: ev:k0 …).")] = 8,
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

    With --shards S it starts S Raft groups of NODES members that speak the
    Redis Cluster protocol; clients follow MOVED, the reshard nemesis moves
    slot ranges holding registers between groups (amber cluster reshard's
    mover, back and forth), a kill or pause hits one group's leader or any
    member, a partition splits one group; membership is not supported. Each
    member's own-group watch (LOCAL) and one merged watch per group are
    checked per group. report.json names which group held which register
    at the start and at the end, and the moves made.

    With --nodes 1 --nemesis crash it runs one plain (non-cluster) server instead,
    through a test hook (AMBER_TEST_VOLATILE_FILES=1, not a user setting)
    that keeps its un-fsynced log bytes in memory, and SIGKILLs and restarts
    it: each kill loses what a power cut would. With --durability always
    no acknowledged write may be lost; with never, losses are expected and
    reported.

    With --workload eventual it declares table ev eventual and sends reads,
    puts of unique values, merges of unique top-level fields and deletes to
    random members (each write's HLC stamp recorded), while the nemesis
    kills, pauses, partitions (Raft and the eventual RESP pull links alike)
    and skews one member's clock (clock-skew: AMBER.LWW CLOCK-OFFSET within
    and beyond --max-clock-skew-ms 2000). After healing it checks that all
    members converge within 30 s (the time is reported), that no
    acknowledged write is lost (present, or superseded by a greater stamp)
    and that no value appears that was never written; report.json adds the
    states each member refused for clock skew and the writes acknowledged on
    a minority side of a partition. Writes OUT/eventual.json (the final
    states) instead of OUT/watch.json.

    Exit code: 0 valid, 1 a violation was found, 2 unknown (the
    linearizability search ran out of its budget), 3 the harness failed.
    """
    from amber.chaos.eventual import recheck_eventual  # noqa: PLC0415
    from amber.chaos.verdict import EXIT_CODES  # noqa: PLC0415
    from amber.chaos.verdict import recheck as judge_again  # noqa: PLC0415

    if recheck:
        if not (out / "history.jsonl").exists():
            fail(f"no history.jsonl in {out}", HARNESS_FAILED)
        if (out / "eventual.json").exists():
            judgement: Any = recheck_eventual(out)
        else:
            judgement = judge_again(out, budget=check_budget)
        console.print(judgement.describe(), highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CODES[judgement.verdict])

    from amber.chaos.harness import ChaosOptions, run  # noqa: PLC0415
    from amber.chaos.nemesis import EVENTUAL_KINDS, KINDS, SHARDED_KINDS  # noqa: PLC0415

    if nemesis is None:
        default = SHARDED_KINDS if shards > 1 else KINDS
        nemesis = ",".join(EVENTUAL_KINDS if workload == "eventual" else default)

    try:
        options = ChaosOptions(
            out,
            nodes=nodes,
            shards=shards,
            seconds=seconds,
            nemesis=tuple(n.strip() for n in nemesis.split(",") if n.strip()),
            clients=clients,
            keys=keys,
            seed=seed,
            rate=rate,
            check_budget=check_budget,
            durability=durability,
            workload=workload,
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
    if result.shards:
        moves = result.reshards
        console.print(
            f"{len(moves)} reshards moved {sum(m['copied'] for m in moves)} keys "
            f"({sum(len(m['keys']) for m in moves)} register moves); "
            f"{result.redirects} MOVED followed",
            highlight=False,
        )
    if "minority_writes" in result.extra:
        console.print(
            f"{result.extra['minority_writes']} writes acknowledged on a minority side "
            "of a partition",
            highlight=False,
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    raise typer.Exit(EXIT_CODES[judgement.verdict])
