"""``make chaos``: randomized rounds of ``amber chaos`` until a time budget runs out.

Each round draws a seed, a cluster size (3 or 5), a length and a subset of
the nemeses from one master seed, runs :func:`amber.chaos.harness.run` into
``OUT/seed-<seed>``, and keeps that folder only if the verdict is not
``valid`` (its history, report, watch streams, timeline and the members'
data folders). A summary line per round and a total at the end; the exit
code is 1 if any round found a violation, 2 if any was unknown.

    python -m amber.chaos.soak --minutes 15 --out chaos-runs [--seed N]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path

from .harness import ChaosOptions, run
from .nemesis import KINDS

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="total time budget")
    parser.add_argument("--out", type=Path, default=Path("chaos-runs"))
    parser.add_argument("--seed", type=int, default=None, help="master seed (default: random)")
    parser.add_argument("--max-round-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    master = args.seed if args.seed is not None else random.randrange(1_000_000)
    rng = random.Random(master)
    deadline = time.monotonic() + args.minutes * 60
    print(f"chaos soak: master seed {master}, {args.minutes:g} min, failures kept in {args.out}")
    totals = {"rounds": 0, "operations": 0, "faults": 0}
    verdicts: dict[str, list[int]] = {"valid": [], "invalid": [], "unknown": []}
    while True:
        seconds = rng.uniform(30, args.max_round_seconds)
        # A round needs its workload time plus about a minute for startup, recovery, checks.
        if time.monotonic() + seconds + 60 > deadline:
            break
        seed = rng.randrange(1_000_000_000)
        nodes = rng.choice((3, 3, 5))
        nemesis = tuple(k for k in KINDS if rng.random() < 0.7) or ("kill",)
        out = args.out / f"seed-{seed}"
        options = ChaosOptions(
            out,
            nodes=nodes,
            seconds=round(seconds),
            nemesis=nemesis,
            clients=rng.choice((5, 10, 15)),
            keys=rng.choice((3, 8, 16)),
            seed=seed,
        )
        try:
            result = run(options)
        except (RuntimeError, OSError) as exc:
            print(f"seed {seed}: the harness failed: {exc} (kept {out})")
            verdicts["unknown"].append(seed)
            continue
        verdict = result.judgement.verdict
        verdicts[verdict].append(seed)
        totals["rounds"] += 1
        totals["operations"] += result.judgement.checked_operations
        totals["faults"] += result.faults_injected
        print(
            f"seed {seed}: {verdict}, {nodes} nodes, {options.seconds:g}s, "
            f"{','.join(nemesis)}: {result.judgement.checked_operations} operations, "
            f"{result.faults_injected} faults",
            flush=True,
        )
        if verdict == "valid":
            shutil.rmtree(out, ignore_errors=True)
        else:
            print(result.judgement.describe())
    print(json.dumps({**totals, **{v: s for v, s in verdicts.items() if s}}))
    if verdicts["invalid"]:
        return 1
    return 2 if verdicts["unknown"] else 0


if __name__ == "__main__":
    sys.exit(main())
