"""The Backend contract, run against every backend through the ``harness`` fixture."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from persistence_support import Harness, chunks_for, drain, expected, payload

from amber.errors import Closed, InvalidArgument, Locked


def test_fresh_store_recovers_empty(harness: Harness) -> None:
    backend, recovered = harness.open()
    assert drain(recovered) == (None, [], [])
    assert recovered.notes == []
    assert backend.flush(sync=True) == 0
    backend.close()


def test_round_trip_across_reopen(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 201):
        backend.append(seq, payload(seq))
        if seq % 10 == 0:
            assert backend.flush(sync=seq % 20 == 0) == seq
    backend.close()
    backend, state = harness.reopen()
    assert state == (None, [], expected(1, 200))
    backend.append(201, b"next")
    assert backend.flush(sync=True) == 201
    backend.close()
    _, state = harness.reopen()
    assert state[2][-1] == (201, b"next")


def test_flush_returns_last_seq_and_is_idempotent(harness: Harness) -> None:
    backend, _ = harness.reopen()
    backend.append(1, b"a")
    backend.append(2, b"b")
    assert backend.flush(sync=False) == 2
    assert backend.flush(sync=True) == 2
    assert backend.flush(sync=True) == 2


def test_empty_and_binary_payloads_survive(harness: Harness) -> None:
    backend, _ = harness.reopen()
    blobs = [b"", bytes(range(256)), b"\x00" * 4000, b"x" * 100_000]
    for seq, blob in enumerate(blobs, 1):
        backend.append(seq, blob)
    backend.close()
    _, (_, _, records) = harness.reopen()
    assert records == list(enumerate(blobs, 1))


def test_synced_records_survive_power_loss_and_unflushed_do_not(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 31):
        backend.append(seq, payload(seq))
    assert backend.flush(sync=True) == 30
    backend.append(31, b"never flushed")
    harness.crash()
    _, (_, _, records) = harness.reopen()
    assert records == expected(1, 30)


def test_close_is_idempotent_and_final(harness: Harness) -> None:
    backend, _ = harness.reopen()
    backend.append(1, b"a")
    backend.close()
    backend.close()
    with pytest.raises(Closed):
        backend.append(2, b"b")
    with pytest.raises(Closed):
        backend.flush(sync=True)
    _, (_, _, records) = harness.reopen()
    assert records == [(1, b"a")]  # close flushed


def test_append_before_recover_is_refused(harness: Harness) -> None:
    backend = harness.make()
    with pytest.raises(InvalidArgument):
        backend.append(1, b"a")
    backend.close()


def test_second_writer_is_locked_out(harness: Harness) -> None:
    first, _ = harness.reopen()
    first.append(1, b"a")
    first.flush(sync=True)
    with pytest.raises(Locked):
        harness.open()
    first.close()
    second, (_, _, records) = harness.reopen()
    assert records == [(1, b"a")]
    second.close()


def test_out_of_order_seq_is_refused(harness: Harness) -> None:
    backend, _ = harness.reopen()
    backend.append(1, b"a")
    with pytest.raises(InvalidArgument):
        backend.append(3, b"gap")
    with pytest.raises(InvalidArgument):
        backend.append(1, b"again")
    backend.append(2, b"b")
    backend.close()
    _, (_, _, records) = harness.reopen()
    assert records == [(1, b"a"), (2, b"b")]


def test_snapshot_round_trip(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 51):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    backend.write_snapshot(40, chunks_for(40, 5))
    for seq in range(51, 61):
        backend.append(seq, payload(seq))
    backend.close()
    _, (snap, chunks, records) = harness.reopen()
    assert snap == 40
    assert chunks == chunks_for(40, 5)
    assert records == expected(41, 60)


def test_snapshot_with_no_chunks_and_empty_chunks(harness: Harness) -> None:
    backend, _ = harness.reopen()
    backend.write_snapshot(0, [])
    backend.append(1, b"a")
    backend.flush(sync=True)
    backend.write_snapshot(1, [b"", b"x", b""])
    backend.close()
    _, state = harness.reopen()
    assert state == (1, [b"", b"x", b""], [])


def test_snapshot_ahead_of_the_log_lets_appends_continue_after_it(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 6):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    backend.write_snapshot(8, chunks_for(8))  # the state already holds 6..8
    backend.append(9, payload(9))
    backend.flush(sync=True)
    backend.close()
    backend, state = harness.reopen()
    assert state == (8, chunks_for(8), expected(9, 9))
    backend.append(10, payload(10))
    backend.close()
    _, state = harness.reopen()
    assert state == (8, chunks_for(8), expected(9, 10))


def test_older_snapshot_than_newest_is_refused(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 11):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    backend.write_snapshot(10, chunks_for(10))
    with pytest.raises(InvalidArgument):
        backend.write_snapshot(5, chunks_for(5))
    with pytest.raises(InvalidArgument):
        backend.write_snapshot(-1, [])


def test_failing_chunk_source_leaves_old_snapshot_and_backend_usable(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 11):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    backend.write_snapshot(5, chunks_for(5))

    def broken() -> Iterator[bytes]:
        yield b"one"
        raise RuntimeError("encoder bug")

    with pytest.raises(RuntimeError, match="encoder bug"):
        backend.write_snapshot(10, broken())
    backend.append(11, payload(11))
    backend.close()
    _, state = harness.reopen()
    assert state == (5, chunks_for(5), expected(6, 11))


def test_many_snapshots_keep_records_after_newest(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 301):
        backend.append(seq, payload(seq))
        if seq % 25 == 0:
            backend.flush(sync=True)
        if seq % 60 == 0:
            backend.write_snapshot(seq, chunks_for(seq))
    backend.close()
    _, state = harness.reopen()
    assert state == (300, chunks_for(300), [])


def test_log_bytes_since_snapshot_grows_and_resets(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 21):
        backend.append(seq, b"x" * 100)
    backend.flush(sync=False)
    grown = backend.log_bytes_since_snapshot()
    assert grown >= 2000
    backend.write_snapshot(20, chunks_for(20))
    assert backend.log_bytes_since_snapshot() < grown
    backend.close()


def test_concurrent_appenders_and_flusher_lose_nothing(harness: Harness) -> None:
    """Group commit: writer threads append (serialized, as the node does) while another flushes."""
    backend, _ = harness.reopen()
    seq_lock = threading.Lock()
    state = {"next": 1}
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(300):
                with seq_lock:
                    seq = state["next"]
                    backend.append(seq, payload(seq))
                    state["next"] = seq + 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def flusher() -> None:
        try:
            last = 0
            while not stop.is_set():
                done = backend.flush(sync=True)
                assert done >= last
                last = done
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    writers = [threading.Thread(target=writer) for _ in range(4)]
    flush_thread = threading.Thread(target=flusher)
    flush_thread.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    flush_thread.join()
    assert not errors
    assert backend.flush(sync=True) == 1200
    harness.crash()
    _, (_, _, records) = harness.reopen()
    assert records == expected(1, 1200)


def test_snapshot_concurrent_with_appends(harness: Harness) -> None:
    backend, _ = harness.reopen()
    for seq in range(1, 101):
        backend.append(seq, payload(seq))
    backend.flush(sync=True)
    done = threading.Event()

    def snapshotter() -> None:
        backend.write_snapshot(100, chunks_for(100, 50))
        done.set()

    thread = threading.Thread(target=snapshotter)
    thread.start()
    seq = 101
    while not done.is_set() or seq < 200:
        backend.append(seq, payload(seq))
        backend.flush(sync=seq % 3 == 0)
        seq += 1
    thread.join()
    backend.flush(sync=True)
    harness.crash()
    _, state = harness.reopen()
    assert state == (100, chunks_for(100, 50), expected(101, seq - 1))
