"""Crash tests: acknowledged writes survive SIGKILL and simulated power loss.

``AMBER_CRASH_CYCLES`` sets the number of SIGKILL cycles (20 in ``make
test``, 500 in ``make soak``).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import amber
from amber.errors import AmberError
from amber.persistence import CrashFiles

CHILD = r"""
import sys, threading, amber
path, start = sys.argv[1], int(sys.argv[2])
db = amber.open(path, durability="always", snapshot_wal_bytes=64 * 1024)
table = db.table("crash")
lock = threading.Lock()

def writer(n):
    i = 0
    while True:
        key = f"{start}-{n}-{i}"
        table.put(key, {"n": n, "i": i, "pad": "x" * 100})
        with lock:  # printed only once the write returned: acknowledged
            sys.stdout.write(key + "\n")
            sys.stdout.flush()
        i += 1

print("ready", flush=True)
threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
for t in threads:
    t.start()
threads[0].join()
"""


def crash_cycles() -> int:
    return int(os.environ.get("AMBER_CRASH_CYCLES", "20"))


def _sigkill_cycles(path: Path, cycles: int, seed: int) -> int:
    """Returns how many writes were acknowledged over all cycles."""
    rng = random.Random(seed)
    acknowledged: list[str] = []  # since the last drop: what must be in the table
    total = 0  # over the whole run, what the caller checks
    for cycle in range(cycles):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(cycle)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            lines: list[str] = []
            reader = threading.Thread(target=lines.extend, args=(child.stdout,))
            reader.start()
            time.sleep(rng.uniform(0.02, 0.4))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            reader.join(timeout=30)
        finally:
            child.kill()
            child.wait(timeout=30)
            child.stdout.close()
        new = [line.strip() for line in lines if line.strip()]
        acknowledged.extend(new)
        total += len(new)
        with amber.open(path, jobs=False) as db:
            table = db.table("crash")
            missing = [key for key in acknowledged if key not in table]
            assert not missing, f"cycle {cycle}: {len(missing)} acknowledged writes lost"
            if acknowledged:
                last = acknowledged[-1]
                _, n, i = last.split("-")
                assert table[last] == {"n": int(n), "i": int(i), "pad": "x" * 100}
            if len(acknowledged) > 20_000:
                # Keep each cycle's cost flat over a long soak: start over with a
                # (durable) drop, which recovery then replays like any batch.
                db.drop_table("crash")
                acknowledged.clear()
            # The child dies before its snapshot job's first run: snapshot here,
            # so replay stays short and later crashes land on snapshot + WAL.
            db.snapshot()
    return total


def test_sigkill_never_loses_an_acknowledged_write(tmp_path: Path) -> None:
    total = _sigkill_cycles(tmp_path / "db", crash_cycles(), seed=7)
    assert total > 0


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_soak(tmp_path: Path) -> None:
    _sigkill_cycles(tmp_path / "db", int(os.environ.get("AMBER_CRASH_CYCLES", "500")), seed=11)


@pytest.mark.parametrize("seed", range(12))
def test_power_loss_drops_only_unsynced_bytes(tmp_path: Path, seed: int) -> None:
    """Writers race a simulated power cut that throws away every un-fsynced byte.

    With odd seeds the cut is a torn write: part of the un-synced tail
    survives, partly zeroed. Either way the folder must open, with every
    acknowledged write present.
    """
    rng = random.Random(seed)
    path = tmp_path / "db"
    acknowledged: list[str] = []
    ack_lock = threading.Lock()
    for round_ in range(3):  # crash the same folder repeatedly
        files = CrashFiles()
        db = amber.open(
            path,
            files=files,
            durability="always",
            snapshot_wal_bytes=16 * 1024,
            segment_bytes=32 * 1024,
        )
        table = db.table("t")
        stop = threading.Event()

        def writer(
            n: int, table: amber.Table = table, stop: threading.Event = stop, round_: int = round_
        ) -> None:
            i = 0
            while not stop.is_set():
                key = f"{round_}-{n}-{i}"
                try:
                    table.put(key, {"i": i, "pad": "y" * rng.randrange(10, 300)})
                except AmberError:
                    return  # the "machine" is down: not acknowledged
                with ack_lock:
                    acknowledged.append(key)
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.05, 0.3))
        if rng.random() < 0.5:
            with contextlib.suppress(AmberError):
                db.snapshot()  # crash near a snapshot too
        files.crash(random.Random(seed) if seed % 2 else None)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        with contextlib.suppress(AmberError):
            db.close()  # the final flush fails on a dead "machine"; the lock is released anyway
        with amber.open(path, jobs=False) as reopened:
            t = reopened.table("t")
            missing = [key for key in acknowledged if key not in t]
            assert not missing, f"round {round_}: lost {missing[:5]} of {len(acknowledged)}"
    assert acknowledged
