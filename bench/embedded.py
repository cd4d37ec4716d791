"""Embedded benchmarks: reads vs a dict, durable puts, group commit, reopen.

Prints one table. Every rate is measured in the same run as the peer it is
compared with, so the ratios hold on a noisy, shared machine even when the
absolute numbers wander.

    .venv/bin/python bench/embedded.py [--keys 1000000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import amber

VALUE = {"user": "ada", "email": "ada@example.com", "tags": ["x", "y"], "n": 12345, "ok": True}


def value_of_100_bytes(i: int) -> dict[str, Any]:
    return {**VALUE, "i": i, "pad": "p" * 20}


def bench_get(tmp: Path, n: int = 100_000, rounds: int = 11) -> tuple[float, float, float]:
    """Lookups per second, dict vs ``Table.get`` on the same keys, and their median ratio."""
    with amber.open(tmp / "get", durability="never", jobs=False) as db:
        table = db.table("t")
        plain: dict[str, Any] = {}
        for start in range(0, n, 1000):
            ops = [
                amber.Put("t", f"key{i:08d}", value_of_100_bytes(i))
                for i in range(start, start + 1000)
            ]
            db.txn([], ops)
        for key, value in table.items():
            plain[key] = value
        keys = [f"key{random.randrange(n):08d}" for _ in range(200_000)]

        def elapsed(get: Any) -> float:
            started = time.perf_counter()
            for key in keys:
                get(key)
            return time.perf_counter() - started

        # Interleave the two so each ratio compares runs taken moments apart,
        # then report the median ratio: the machine's speed wanders.
        ratios, dict_times, amber_times = [], [], []
        for _ in range(rounds):
            d, a = elapsed(plain.get), elapsed(table.get)
            dict_times.append(d)
            amber_times.append(a)
            ratios.append(d / a)
        return (
            len(keys) / statistics.median(dict_times),
            len(keys) / statistics.median(amber_times),
            statistics.median(ratios),
        )


def _put_rate(path: Path, durability: str, writers: int, seconds: float) -> tuple[float, int]:
    """Acknowledged puts per second with ``writers`` threads; also fsyncs done."""
    with amber.open(path, durability=durability, jobs=False) as db:
        table = db.table("t")
        stop = time.perf_counter() + seconds
        counts = [0] * writers

        def writer(n: int) -> None:
            i = 0
            while time.perf_counter() < stop:
                table.put(f"w{n}-{i}", value_of_100_bytes(i))
                i += 1
            counts[n] = i

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        fsyncs = db.stats()["pipeline"]["fsyncs"]
    return sum(counts) / elapsed, fsyncs


REOPEN_CHILD = r"""
import sys, time, gc
sys.path.insert(0, sys.argv[2])
import amber
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
gc.collect()
before = rss()
started = time.perf_counter()
db = amber.open(sys.argv[1], jobs=False)
elapsed = time.perf_counter() - started
keys = len(db.table("t"))
print(elapsed, keys, rss() - before)
db.close()
"""


def bench_reopen(path: Path, keys: int, tail: int) -> tuple[float, int, float]:
    """Load ``keys`` keys, snapshot, write a WAL tail, then time a cold reopen."""
    with amber.open(path, durability="never", jobs=False) as db:
        for start in range(0, keys - tail, 1000):
            end = min(start + 1000, keys - tail)
            db.txn(
                [],
                [amber.Put("t", f"key{i:08d}", value_of_100_bytes(i)) for i in range(start, end)],
            )
        db.snapshot()
        table = db.table("t")
        for i in range(keys - tail, keys):
            table.put(f"key{i:08d}", value_of_100_bytes(i))
    out = subprocess.run(
        [sys.executable, "-c", REOPEN_CHILD, str(path), str(Path(__file__).resolve().parents[1])],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    elapsed, count, rss = float(out[0]), int(out[1]), int(out[2])
    return elapsed, count, rss / max(count, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys for the reopen test")
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each put run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="amber-bench-"))
    rows: list[tuple[str, str, str]] = []
    try:
        gc.collect()
        dict_rate, amber_rate, ratio = bench_get(tmp)
        rows.append(("get: dict.get", f"{dict_rate:,.0f}/s", ""))
        rows.append(
            (
                "get: Table.get",
                f"{amber_rate:,.0f}/s",
                f"{ratio:.2f}x dict, median of 11 interleaved rounds (goal >= 0.5x)",
            )
        )

        one, one_fsyncs = _put_rate(tmp / "p1", "always", 1, args.seconds)
        many, many_fsyncs = _put_rate(tmp / "p64", "always", 64, args.seconds)
        rows.append(("put always, 1 writer", f"{one:,.0f}/s", f"{one_fsyncs} fsyncs"))
        rows.append(
            (
                "put always, 64 writers",
                f"{many:,.0f}/s",
                f"{many / one:.1f}x one writer (goal >= 20x), {many_fsyncs} fsyncs",
            )
        )
        for mode in ("interval", "never"):
            rate, _ = _put_rate(tmp / f"p-{mode}", mode, 1, args.seconds)
            rows.append((f"put {mode}, 1 writer", f"{rate:,.0f}/s", f"{rate / one:.1f}x always"))
        tail = max(1, args.keys // 20)
        elapsed, count, per_key = bench_reopen(tmp / "reopen", args.keys, tail)
        rows.append(
            (
                f"reopen {count:,} keys ({tail:,} in WAL)",
                f"{elapsed:.2f} s",
                f"goal <= 5 s; {per_key:,.0f} bytes RSS per key",
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print(f"{'benchmark':<{width}}  {'result':>{vwidth}}  notes")
    print(f"{'-' * width}  {'-' * vwidth}  -----")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    print(
        f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus; "
        "get: medians of 11 rounds; puts: one run each)"
    )


if __name__ == "__main__":
    main()
