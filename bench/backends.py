"""Persistence backends compared: durable put rate and reopen time, printed as a table.

For each backend (log folder, SQLite file, PostgreSQL on loopback, S3 on a
moto server on loopback): puts per second with ``durability="always"`` from
1 and from 64 writer threads (group commit shares each fsync / commit / PUT),
and the time ``amber.open`` takes on 100,000 keys — replaying them from the
log, and loading them from a snapshot. PostgreSQL and moto are started the
way the tests start them (``tests/persistence/services.py``); a backend whose
service cannot start is shown as skipped.

Run: ``make bench`` or ``.venv/bin/python bench/backends.py [--seconds 3]``.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import tempfile
import threading
import time
from collections.abc import Callable

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "persistence"))
sys.path.insert(0, str(ROOT))

import services  # noqa: E402

import amber  # noqa: E402

KEYS = 100_000


def put_rate(target: str, writers: int, seconds: float) -> float:
    """Acknowledged puts per second from ``writers`` threads over ``seconds``."""
    db = amber.open(target, durability="always", jobs=False)
    table = db.table("bench")
    counts = [0] * writers
    barrier = threading.Barrier(writers + 1)
    deadline = [0.0]

    def run(n: int) -> None:
        barrier.wait()
        i = 0
        while time.monotonic() < deadline[0]:
            table.put(f"{n}-{i}", {"n": n, "i": i, "pad": "x" * 100})
            i += 1
        counts[n] = i

    threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    deadline[0] = time.monotonic() + seconds
    started = time.monotonic()
    barrier.wait()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.monotonic() - started
    db.close()
    return sum(counts) / elapsed


def reopen_times(target: str) -> tuple[float, float]:
    """Seconds to open 100,000 keys: from the log alone, then from a snapshot."""
    with amber.open(target, durability="never", jobs=False) as db:
        for start in range(0, KEYS, 1000):
            db.txn(
                [],
                [
                    amber.Put("docs", f"k{i:06d}", {"i": i, "pad": "y" * 50})
                    for i in range(start, start + 1000)
                ],
            )
    started = time.perf_counter()
    with amber.open(target, jobs=False) as db:
        replay = time.perf_counter() - started
        assert len(db.table("docs")) == KEYS
        db.snapshot()
    started = time.perf_counter()
    with amber.open(target, jobs=False) as db:
        loaded = time.perf_counter() - started
        assert len(db.table("docs")) == KEYS
    return replay, loaded


def targets(tmp: pathlib.Path) -> list[tuple[str, Callable[[str], str]]]:
    """``(name, make(label) -> new target)`` per backend."""
    return [
        ("log", lambda label: str(tmp / f"log-{label}")),
        ("sqlite", lambda label: f"sqlite:///{tmp / f'{label}.db'}"),
        ("postgres", lambda label: services.fresh_postgres_url()),
        ("s3 (moto)", lambda label: services.s3_url(lease_seconds=30)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per put-rate run")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="amber-bench-") as folder:
        for name, make in targets(pathlib.Path(folder)):
            try:
                one = put_rate(make("w1"), 1, args.seconds)
                many = put_rate(make("w64"), 64, args.seconds)
                replay, loaded = reopen_times(make("reopen"))
            except Exception as exc:  # a service that cannot start: say so, go on
                rows.append(f"| {name} | skipped: {exc} | | | |")
                continue
            rows.append(f"| {name} | {one:,.0f} | {many:,.0f} | {replay:.2f} s | {loaded:.2f} s |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        "| backend | puts/s, 1 writer | puts/s, 64 writers | reopen 100k keys from the log "
        "| reopen 100k keys from a snapshot |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(row)
    print(
        f'\n`durability="always"`, {args.seconds:g} s per rate; values ~130 bytes; '
        "PostgreSQL 15 and moto on loopback (moto is not S3's latency)."
    )


if __name__ == "__main__":
    main()
