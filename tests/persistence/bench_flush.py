"""Measure WAL flush cost on this disk: ``python tests/persistence/bench_flush.py [folder]``.

Prints the median latency of ``flush(sync=True)`` carrying one 150-byte
record, and the throughput when each synced flush carries a group of 64
records (what group commit buys). Not collected by pytest.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from amber.config import Config
from amber.persistence import LogBackend

PAYLOAD = b"x" * 150


def run(folder: str) -> dict[str, float]:
    backend = LogBackend(folder, Config(segment_bytes=64 * 1024 * 1024))
    backend.recover()
    seq = 0
    latencies = []
    for _ in range(200):
        seq += 1
        backend.append(seq, PAYLOAD)
        start = time.perf_counter()
        backend.flush(sync=True)
        latencies.append(time.perf_counter() - start)
    groups = 200
    start = time.perf_counter()
    for _ in range(groups):
        for _ in range(64):
            seq += 1
            backend.append(seq, PAYLOAD)
        backend.flush(sync=True)
    grouped = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(groups):
        for _ in range(64):
            seq += 1
            backend.append(seq, PAYLOAD)
        backend.flush(sync=False)
    unsynced = time.perf_counter() - start
    backend.close()
    return {
        "sync flush, 1 x 150 B, median ms": statistics.median(latencies) * 1000,
        "sync flush, 1 x 150 B, p99 ms": sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000,
        "sync flush, 64 x 150 B groups, records/s": groups * 64 / grouped,
        "sync flush, 64 x 150 B groups, flushes/s": groups / grouped,
        "unsynced flush, 64 x 150 B groups, records/s": groups * 64 / unsynced,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as folder:
        for name, value in run(folder).items():
            print(f"{name:48} {value:12,.2f}")


if __name__ == "__main__":
    main()
