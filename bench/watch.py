"""Watch benchmark: 1,000 prefix watchers, delivery latency and writer cost.

Each watcher watches its own prefix (``w0042/``). Two ways to consume them,
each measured: ``async for`` on one event loop thread (how a server holds
them), and callbacks (run by the database's one dispatcher thread).

1. Latency: a writer paces puts at ``--rate`` per second, each to a random
   watcher's prefix, stamping ``perf_counter_ns()`` into the value just
   before ``put``; the consumer subtracts it on arrival. So latency counts
   the commit (``--durability``) plus the delivery.
2. Cost: unpaced puts from one writer for ``--seconds`` without watchers
   and with the 1,000 watchers draining every event, alternated
   ``--rounds`` times in the same process, best of each: the ratio holds
   on a noisy machine. In one process the consumers share the GIL with the
   writer, so the cost includes consuming the events, not just publishing:
   each put here wakes a different, idle watcher, the worst case for an
   asyncio task per watcher (a task wake-up per event).

    .venv/bin/python bench/watch.py [--watchers 1000] [--rate 5000] [--seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import amber


class Consumers:
    """``n`` prefix watches, drained by ``async for`` tasks or by callbacks."""

    def __init__(self, db: amber.Database, n: int, mode: str) -> None:
        self.latencies: list[int] = []
        self.received = 0
        self.mode = mode
        table = db.table("t")
        if mode == "callback":
            self.watches = [
                table.watch(prefix=f"w{i:04d}/", callback=self._on_event) for i in range(n)
            ]
            return
        self.watches = [table.watch(prefix=f"w{i:04d}/") for i in range(n)]
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))
        self.thread.start()

    def _on_event(self, event: amber.Event) -> None:
        self.latencies.append(time.perf_counter_ns() - event.value["t"])
        self.received += 1

    async def _main(self) -> None:
        await asyncio.gather(*(self._drain(w) for w in self.watches))

    async def _drain(self, watch: amber.Watch[amber.Event]) -> None:
        async for event in watch:
            self.latencies.append(time.perf_counter_ns() - event.value["t"])
            self.received += 1

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.perf_counter() + timeout
        while self.received < count and time.perf_counter() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        if self.mode == "callback":
            for watch in self.watches:
                watch.close()
            return
        for watch in self.watches:
            self.loop.call_soon_threadsafe(watch.close)
        self.thread.join()
        self.loop.close()


def percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def paced_latency(
    path: Path, durability: str, mode: str, watchers: int, *, rate: int, seconds: float
) -> tuple[float, float, float, int, float]:
    """p50, p99, max latency (ms), events delivered, achieved put rate."""
    with amber.open(path, durability=durability, jobs=False) as db:
        consumers = Consumers(db, watchers, mode)
        table = db.table("t")
        rng = random.Random(1)
        total = int(rate * seconds)
        started = time.perf_counter()
        for i in range(total):
            due = started + i / rate
            while (now := time.perf_counter()) < due:
                time.sleep(min(0.001, due - now))
            table.put(f"w{rng.randrange(watchers):04d}/{i}", {"t": time.perf_counter_ns(), "i": i})
        achieved = total / (time.perf_counter() - started)
        consumers.wait_for(total)
        consumers.close()
        lat = consumers.latencies
        return (
            percentile(lat, 0.50),
            percentile(lat, 0.99),
            max(lat) / 1e6,
            consumers.received,
            achieved,
        )


def put_rate(
    path: Path, durability: str, mode: str, watchers: int, seconds: float
) -> tuple[float, int, int]:
    """Unpaced puts per second from one writer thread; puts; events delivered."""
    with amber.open(path, durability=durability, jobs=False) as db:
        consumers = Consumers(db, watchers, mode) if watchers else None
        table = db.table("t")
        rng = random.Random(2)
        count = 0
        started = time.perf_counter()
        stop = started + seconds
        while time.perf_counter() < stop:
            for _ in range(100):
                table.put(f"w{rng.randrange(max(watchers, 1)):04d}/{count}", {"t": 0, "i": count})
                count += 1
        rate = count / (time.perf_counter() - started)
        received = 0
        if consumers is not None:
            consumers.wait_for(count)
            received = consumers.received
            consumers.close()
        return rate, count, received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--durability", default="never", choices=["always", "interval", "never"])
    parser.add_argument("--modes", default="async,callback")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        run = 0

        def path() -> Path:
            nonlocal run
            run += 1
            return tmp / str(run)

        for mode in args.modes.split(","):
            p50, p99, worst, delivered, achieved = paced_latency(
                path(), args.durability, mode, args.watchers, rate=args.rate, seconds=args.seconds
            )
            bare: list[float] = []
            watched: list[float] = []
            puts = received = 0
            for _ in range(args.rounds):
                bare.append(put_rate(path(), args.durability, mode, 0, args.seconds)[0])
                rate, puts, received = put_rate(
                    path(), args.durability, mode, args.watchers, args.seconds
                )
                watched.append(rate)
            cost = 1 - max(watched) / max(bare)
            rows += [
                (mode, "", ""),
                ("  paced puts/s", f"{achieved:,.0f}", f"target {args.rate:,}"),
                ("  events delivered", f"{delivered:,}", f"of {int(args.rate * args.seconds):,}"),
                ("  latency p50 (ms)", f"{p50:.2f}", "put() call -> consumer"),
                ("  latency p99 (ms)", f"{p99:.2f}", "goal <= 20"),
                ("  latency max (ms)", f"{worst:.2f}", ""),
                ("  puts/s, no watchers", f"{max(bare):,.0f}", "one writer, best of rounds"),
                (
                    f"  puts/s, {args.watchers:,} watchers",
                    f"{max(watched):,.0f}",
                    f"last round: {received:,} of {puts:,} events delivered",
                ),
                ("  writer throughput cost", f"{cost:.0%}", "goal <= 30%"),
            ]
    print(
        f"watch benchmark: {args.watchers:,} prefix watchers, durability={args.durability}, "
        f"{args.seconds:g} s per run, {args.rounds} rounds"
    )
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>10}  {note}".rstrip())


if __name__ == "__main__":
    main()
