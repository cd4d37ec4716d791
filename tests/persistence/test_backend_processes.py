"""Conformance cases that need a real store shared between processes, for every such backend.

Each backend in ``PROCESS_BACKENDS`` (log, sqlite, postgres, s3) goes
through the same cases: a writer process killed with SIGKILL loses no
acknowledged record; a second open from another process is refused with
``Locked`` and changes nothing; snapshots vacuum the log and superseded
snapshots; a damaged record is reported as ``Corrupted``, never skipped.
"""

from __future__ import annotations

import itertools
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
import typing
from collections.abc import Iterator

import pytest
import services
from persistence_support import (
    PROCESS_BACKENDS,
    RemoteHarness,
    chunks_for,
    drain,
    expected,
    payload,
)

from amber.config import Config
from amber.errors import Corrupted, Locked

HERE = pathlib.Path(__file__).parent
ROOT = HERE.parent.parent
CONFIG = Config(segment_bytes=4096, keep_snapshots=2)

WRITER = r"""
import sys
from amber.config import Config
from amber.persistence import open_backend
from persistence_support import chunks_for, drain, payload

backend = open_backend(sys.argv[1], Config(segment_bytes=4096, keep_snapshots=2))
snap, _, records = drain(backend.recover())
seq = records[-1][0] if records else (snap or 0)
print("ready", seq, flush=True)
while True:
    seq += 1
    backend.append(seq, payload(seq))
    backend.flush(sync=True)
    print(seq, flush=True)  # only once flush returned: acknowledged
    if seq % 40 == 0:
        backend.write_snapshot(seq, chunks_for(seq))
"""

HOLDER = r"""
import sys
from amber.config import Config
from amber.persistence import open_backend
from persistence_support import drain, payload

backend = open_backend(sys.argv[1], Config())
drain(backend.recover())
for seq in range(1, 6):
    backend.append(seq, payload(seq))
backend.flush(sync=True)
print("ready", flush=True)
sys.stdin.readline()
backend.close()
"""


@pytest.fixture(params=sorted(PROCESS_BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[RemoteHarness]:
    harness = PROCESS_BACKENDS[request.param](tmp_path)
    yield harness
    harness.close_all()


def _child(script: str, target: str, **kwargs: typing.Any) -> subprocess.Popen[str]:
    env = services.service_env()
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT), env.get("PYTHONPATH", "")])
    return subprocess.Popen(
        [sys.executable, "-c", script, target],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
        **kwargs,
    )


def test_sigkill_of_a_writer_loses_no_acknowledged_record(store: RemoteHarness) -> None:
    rng = random.Random(5)
    acked = 0
    for cycle in range(2):
        with _child(WRITER, store.target()) as child:
            assert child.stdout is not None
            ready = child.stdout.readline().split()
            assert ready and ready[0] == "ready", f"writer did not start: {ready}"
            assert int(ready[1]) >= acked
            lines: list[str] = []
            reader = threading.Thread(target=lines.extend, args=(child.stdout,))
            reader.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and len(lines) < 50 + 20 * cycle:
                time.sleep(0.02)  # at least one snapshot and some records after it
            time.sleep(rng.uniform(0.0, 0.2))
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
            reader.join(timeout=30)
        acked = max([acked, *(int(line) for line in lines if line.strip())])
        assert acked > 0
        store.wait_lock_free()
        backend, (snap, chunks, records) = store.reopen(CONFIG)
        after = snap or 0
        if snap is not None:
            assert chunks == chunks_for(snap)
        assert [seq for seq, _ in records] == list(range(after + 1, after + 1 + len(records)))
        assert all(data == payload(seq) for seq, data in records)
        last = records[-1][0] if records else after
        assert last >= acked, f"cycle {cycle}: acknowledged {acked}, recovered up to {last}"
        backend.close()


def test_second_open_from_another_process_is_refused(store: RemoteHarness) -> None:
    with _child(HOLDER, store.target(), stdin=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stdin is not None
        try:
            assert child.stdout.readline().strip() == "ready"
            with pytest.raises(Locked):
                store.open(CONFIG)
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    backend, state = store.reopen(CONFIG)
    assert state == (None, [], expected(1, 5))  # the refused open changed nothing
    backend.close()


@pytest.mark.parametrize("keep", [1, 2])
def test_snapshots_vacuum_the_log_and_older_snapshots(store: RemoteHarness, keep: int) -> None:
    config = CONFIG.replace(keep_snapshots=keep, segment_bytes=1024)
    backend, _ = store.reopen(config)
    for seq in range(1, 301):
        backend.append(seq, payload(seq))
        if seq % 25 == 0:
            backend.flush(sync=True)
        if seq % 60 == 0:
            backend.write_snapshot(seq, chunks_for(seq))
    backend.append(301, payload(301))
    backend.close()
    kept = [240, 300][-keep:]
    assert store.snapshot_seqs() == kept
    units = store.log_units()
    oldest = kept[0]
    for first, following in itertools.pairwise(units):
        assert following - 1 > oldest, f"log unit at {first} is covered by snapshot {oldest}"
    assert units and units[-1] <= 301
    _, state = store.reopen(config)
    assert state == (300, chunks_for(300), [(301, payload(301))])


def test_a_damaged_record_is_reported_not_skipped(store: RemoteHarness) -> None:
    backend, _ = store.reopen(CONFIG)
    for seq in range(1, 61):
        backend.append(seq, payload(seq))
        if seq % 10 == 0:
            backend.flush(sync=True)
    backend.close()
    where = store.damage_record(17)
    for _ in range(2):  # nothing was repaired or cut away: it stays reported
        with pytest.raises(Corrupted) as info:
            backend, recovered = store.open(CONFIG)
            try:
                drain(recovered)
            finally:
                backend.close()
        assert where in str(info.value)
