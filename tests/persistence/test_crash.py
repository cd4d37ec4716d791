"""Power cuts at random moments: synced records always survive, recovery never says Corrupted.

Each test runs cycles on one folder: open on a :class:`CrashFiles`, check
what came back against a model of everything written, run a random workload
(appends, flushes with and without sync, snapshots, segment rolls,
retention), then cut the power — between operations or from another thread
in the middle of them, cleanly or with torn writes.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import random
import threading
import time
from collections.abc import Callable

import pytest
from persistence_support import chunks_for, drain

from amber.config import Config
from amber.errors import StorageFailed
from amber.persistence import CrashFiles, FileLayer, LogBackend

CONFIG = Config(segment_bytes=2048, keep_snapshots=2)


class Model:
    """What was written, and what must survive."""

    def __init__(self) -> None:
        self.payloads: dict[int, bytes] = {}
        self.chunks: dict[int, list[bytes]] = {}
        self.last = 0  # last appended seq
        self.acked = 0  # every seq up to here was synced
        self.snapshot_done = 0  # newest snapshot whose write returned

    def check(
        self, snap: int | None, chunks: list[bytes], records: list[tuple[int, bytes]]
    ) -> None:
        after = snap or 0
        if snap is not None:
            assert snap >= self.snapshot_done
            assert chunks == self.chunks[snap]
        seqs = [seq for seq, _ in records]
        assert seqs == list(range(after + 1, after + 1 + len(seqs)))
        for seq, data in records:
            assert data == self.payloads[seq], seq
        last = seqs[-1] if seqs else after
        assert last >= self.acked, (last, self.acked)
        # The recovered state is the new truth: forget what was lost.
        self.payloads = {s: p for s, p in self.payloads.items() if s <= last}
        self.chunks = {s: c for s, c in self.chunks.items() if s <= last}
        self.last = self.acked = last
        self.snapshot_done = after


def workload(backend: LogBackend, model: Model, rng: random.Random, steps: int) -> None:
    for _ in range(steps):
        for _ in range(rng.randint(1, 8)):
            seq = model.last + 1
            size = rng.choice((0, 20, 150, 300, 1500))
            data = rng.randbytes(size)
            model.payloads[seq] = data
            backend.append(seq, data)
            model.last = seq
        sync = rng.random() < 0.6
        done = backend.flush(sync=sync)
        if sync:
            model.acked = done
        if rng.random() < 0.15 and model.last >= model.snapshot_done:
            seq = model.last  # may be ahead of what was flushed
            chunks = chunks_for(seq, rng.randint(0, 4))
            model.chunks[seq] = chunks
            backend.write_snapshot(seq, chunks)
            model.snapshot_done = seq


def cycle(
    folder: pathlib.Path, model: Model, rng: random.Random, torn: bool, threaded: bool
) -> None:
    files = CrashFiles()
    cut_rng = random.Random(rng.random()) if torn else None
    crash_cycle(files, lambda: files.crash(cut_rng), folder, model, rng, threaded)


def crash_cycle(  # noqa: PLR0917
    files: FileLayer,
    crash: Callable[[], None],
    folder: pathlib.Path,
    model: Model,
    rng: random.Random,
    threaded: bool,
) -> None:
    """Recover and check, write, then ``crash()`` between operations or in the middle of one."""
    backend = LogBackend(folder, CONFIG, files=files)
    model.check(*drain(backend.recover()))
    if not threaded:
        workload(backend, model, rng, rng.randint(0, 30))
        crash()
    else:
        stop = threading.Event()

        def run() -> None:
            with contextlib.suppress(StorageFailed):
                while not stop.is_set():
                    workload(backend, model, rng, 1)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(rng.uniform(0, 0.01))
        crash()
        stop.set()
        worker.join()
    with contextlib.suppress(StorageFailed):
        backend.close()


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-writes"])
@pytest.mark.parametrize("threaded", [False, True], ids=["between-ops", "mid-op"])
def test_power_cuts_lose_nothing_acknowledged(
    tmp_path: pathlib.Path, torn: bool, threaded: bool
) -> None:
    for seed in range(40):
        rng = random.Random(seed)
        folder = tmp_path / f"seed{seed}"
        model = Model()
        for _ in range(4):
            cycle(folder, model, rng, torn, threaded)
        backend = LogBackend(folder, CONFIG)
        model.check(*drain(backend.recover()))
        backend.close()


@pytest.mark.slow
def test_power_cut_soak(tmp_path: pathlib.Path) -> None:
    """``make soak``: AMBER_CRASH_CYCLES cycles on one folder, all modes mixed."""
    cycles = int(os.environ.get("AMBER_CRASH_CYCLES", "200"))
    rng = random.Random(cycles)
    model = Model()
    folder = tmp_path / "data"
    for _ in range(cycles):
        cycle(folder, model, rng, torn=rng.random() < 0.5, threaded=rng.random() < 0.5)
    backend = LogBackend(folder, CONFIG)
    model.check(*drain(backend.recover()))
    backend.close()
