"""The durable Raft journal: durability, recovery, lazy truncation, PySyncObj's list semantics."""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pysyncobj.journal import Journal, MemoryJournal

from amber.errors import AmberError, Closed, Corrupted, InvalidArgument, StorageFailed
from amber.persistence import CrashFiles
from amber.persistence.files import AppendFile, OsFiles
from amber.persistence.framing import (
    FILE_HEADER_SIZE,
    FrameReader,
    encode_file_header,
    encode_frame,
)
from amber.replication.journal import JOURNAL_MAGIC, VERSION, DurableJournal, Entry

Key = tuple[bytes, int, int]


def entry(idx: int, term: int = 1, command: bytes | None = None) -> Entry:
    return (command if command is not None else f"cmd-{idx}".encode(), idx, term)


def fill(journal: DurableJournal, first: int, last: int, term: int = 1) -> None:
    for idx in range(first, last + 1):
        journal.add(*entry(idx, term))


def journal_path(folder: Path) -> Path:
    return folder / "journal"


def frame_offsets(path: Path) -> list[int]:
    return [offset for offset, _ in FrameReader(path.read_bytes(), FILE_HEADER_SIZE)]


def reopen_after_cut(folder: Path, files: CrashFiles) -> DurableJournal:
    files.crash()
    return DurableJournal(folder, CrashFiles())


# -- basics -----------------------------------------------------------------------------------


def test_is_a_pysyncobj_journal_with_its_defaults(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    assert isinstance(journal, Journal)
    assert len(journal) == 0
    assert journal.getCurrentTerm() == 0
    assert journal.getVotedForNodeId() is None
    assert journal.getRaftCommitIndex() == 1
    journal.close()


def test_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    journal = DurableJournal(folder)
    fill(journal, 1, 20)
    journal.add(b"", 21, 2)
    journal.setCurrentTerm(2, "10.0.0.1:4321")
    journal.setRaftCommitIndex(17)
    assert journal.sync() is True
    journal.onOneSecondTimer()
    journal.close()
    journal.close()  # idempotent

    again = DurableJournal(folder)
    assert again[:] == [*(entry(i) for i in range(1, 21)), (b"", 21, 2)]
    assert again.getCurrentTerm() == 2
    assert again.getVotedForNodeId() == "10.0.0.1:4321"
    assert again.getRaftCommitIndex() == 17
    assert again.notes == []
    again.close()


def test_indexing_shapes_match_memory_journal(tmp_path: Path) -> None:
    journal, memory = DurableJournal(tmp_path / "j"), MemoryJournal()
    for e in (entry(i) for i in range(5, 12)):
        journal.add(*e)
        memory.add(*e)
    for item in (0, 3, -1, -7, slice(None), slice(2, 4), slice(-2, None), slice(5, 99), slice(9)):
        assert journal[item] == memory[item]
        assert type(journal[item]) is type(memory[item])
    for bad in (7, -8):
        with pytest.raises(IndexError):
            journal[bad]
    assert list(journal) == list(memory[:])
    journal.close()


def test_add_must_continue_the_indexes(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    journal.add(*entry(7))  # an empty journal may start anywhere (after a snapshot)
    with pytest.raises(InvalidArgument):
        journal.add(*entry(9))
    assert journal[:] == [entry(7)]
    journal.close()


def test_closed_journal_refuses_writes(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    fill(journal, 1, 2)
    journal.close()
    with pytest.raises(Closed):
        journal.add(*entry(3))
    assert journal.sync() is False


# -- group commit and what reaches the disk ---------------------------------------------------


def test_nothing_reaches_disk_before_sync(tmp_path: Path) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 3)
    journal.sync()
    size = files.size(str(journal_path(folder)))
    fill(journal, 4, 50)
    assert files.size(str(journal_path(folder))) == size  # add() does no I/O at all
    assert journal.stats()["buffered_bytes"] > 0
    again = reopen_after_cut(folder, files)
    assert again[:] == [entry(i) for i in range(1, 4)]


def test_many_adds_share_one_sync(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    before = journal.stats()["syncs"]
    fill(journal, 1, 500)
    assert journal.sync() is True
    assert journal.sync() is False  # clean: no I/O
    stats = journal.stats()
    assert stats["syncs"] == before + 1
    assert (stats["entries"], stats["first_idx"], stats["last_idx"]) == (500, 1, 500)
    assert stats["bytes_written"] > 500 * 12
    journal.close()


def test_synced_entries_survive_a_power_cut_unsynced_ones_do_not(tmp_path: Path) -> None:
    rng = random.Random(5)
    for round_ in range(20):
        folder, files = tmp_path / f"j{round_}", CrashFiles()
        journal = DurableJournal(folder, files)
        synced = rng.randint(0, 30)
        fill(journal, 1, synced)
        journal.sync()
        fill(journal, synced + 1, synced + rng.randint(0, 30))
        again = reopen_after_cut(folder, files)
        assert again[:] == [entry(i) for i in range(1, synced + 1)]


class _LyingFile(AppendFile):
    """Writes reach the file, ``sync`` is skipped while its layer says so."""

    def __init__(self, inner: AppendFile, layer: LyingFiles) -> None:
        self._inner, self._layer, self.path = inner, layer, inner.path

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def sync(self) -> None:
        if not self._layer.skip_sync:
            self._inner.sync()

    def close(self) -> None:
        self._inner.close()


class LyingFiles(CrashFiles):
    """A crash layer whose syncs can be skipped: writes stay unsynced, so a cut tears them."""

    skip_sync = False

    def open_append(self, path: str) -> AppendFile:
        return _LyingFile(super().open_append(path), self)


def test_torn_tail_is_cut_with_a_note(tmp_path: Path) -> None:
    torn = 0
    for seed in range(40):
        rng = random.Random(seed)
        folder, files = tmp_path / f"j{seed}", LyingFiles()
        journal = DurableJournal(folder, files)
        fill(journal, 1, 10)
        journal.sync()
        files.skip_sync = True
        for idx in range(11, 11 + rng.randint(1, 40)):
            journal.add(b"x" * rng.randint(0, 300), idx, 1)
            if rng.random() < 0.2:
                journal.sync()  # written, never synced
        journal.sync()
        files.crash(rng)
        again = DurableJournal(folder, CrashFiles())
        assert again[:10] == [entry(i) for i in range(1, 11)]
        assert [e[1] for e in again] == list(range(1, len(again) + 1))
        if again.notes:
            torn += 1
            assert "torn tail" in again.notes[0]
        again.close()
        assert DurableJournal(folder).notes == []  # the cut was made durable
    assert torn > 5


def test_flipped_byte_in_the_middle_is_corruption(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    journal = DurableJournal(folder)
    fill(journal, 1, 10)
    journal.close()
    path = journal_path(folder)
    offsets = frame_offsets(path)
    data = bytearray(path.read_bytes())
    data[offsets[4] + 14] ^= 0x40  # inside the body of the fifth entry
    path.write_bytes(bytes(data))
    with pytest.raises(Corrupted) as caught:
        DurableJournal(folder)
    assert caught.value.file == str(path)
    assert caught.value.offset == offsets[4]


def test_damaged_header_is_corruption(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    DurableJournal(folder).close()
    path = journal_path(folder)
    data = bytearray(path.read_bytes())
    data[3] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(Corrupted, match="header"):
        DurableJournal(folder)


def _write_records(folder: Path, records: list[tuple[object, ...]]) -> list[int]:
    """Replace the journal file with hand-made records; returns their offsets."""
    body = bytearray(encode_file_header(JOURNAL_MAGIC, VERSION, 1))
    offsets = []
    for record in records:
        offsets.append(len(body))
        body += encode_frame(msgpack.packb(record))
    journal_path(folder).write_bytes(bytes(body))
    return offsets


@pytest.mark.parametrize(
    ("records", "bad"),
    [
        ([(1, 1, 1, b"a"), (1, 2, 1, b"b"), (1, 4, 1, b"d")], 2),  # a gap
        ([(1, 1, 1, b"a"), (1, 1, 1, b"a")], 1),  # a repeat
        ([(1, 1, 1, b"a"), (2, 5)], 1),  # a truncate past the end
        ([(2, 1)], 0),  # a truncate of nothing
        ([(1, 1, 1, "text")], 0),  # a command that is not bytes
        ([(9, 1)], 0),  # an unknown kind
    ],
)
def test_inconsistent_records_are_corruption(
    tmp_path: Path, records: list[tuple[object, ...]], bad: int
) -> None:
    folder = tmp_path / "j"
    DurableJournal(folder).close()
    offsets = _write_records(folder, records)
    with pytest.raises(Corrupted) as caught:
        DurableJournal(folder)
    assert caught.value.offset == offsets[bad]


def test_truncate_records_replay(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    DurableJournal(folder).close()
    _write_records(folder, [(1, 1, 1, b"a"), (1, 2, 1, b"b"), (2, 2), (1, 2, 2, b"B"), (2, 1)])
    assert len(DurableJournal(folder)) == 0


# -- the re-sent identical entries (PySyncObj's "already-applied" truncation) ----------------


@pytest.mark.parametrize("re_added", range(6))
def test_resent_identical_entries_write_nothing_and_survive_any_cut(
    tmp_path: Path, re_added: int
) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    path = str(journal_path(folder))
    size, written = files.size(path), journal.stats()["bytes_written"]

    journal.deleteEntriesFrom(5)  # PySyncObj: prevLogIdx 5, then re-adds 6..10
    assert [e[1] for e in journal] == [1, 2, 3, 4, 5]
    fill(journal, 6, 5 + re_added)
    journal.sync()
    assert files.size(path) == size
    assert files.durable_size(path) == size
    assert journal.stats()["bytes_written"] == written
    assert len(journal) == 5 + re_added

    again = reopen_after_cut(folder, files)
    assert again[:] == [entry(i) for i in range(1, 11)]


def test_fully_resent_entries_leave_the_journal_clean(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    fill(journal, 1, 10)
    journal.sync()
    journal.deleteEntriesFrom(5)
    fill(journal, 6, 10)
    assert journal.sync() is False
    stats = journal.stats()
    assert (stats["pending"], stats["restored"], stats["truncations"]) == (0, 5, 0)
    journal.add(*entry(11))  # and the log goes on as usual
    assert journal.sync() is True
    journal.close()


def test_a_shorter_resend_keeps_the_rest_on_disk(tmp_path: Path) -> None:
    """PySyncObj drops 9..10 without a conflict; the disk keeps them until one comes."""
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    journal.deleteEntriesFrom(5)
    fill(journal, 6, 8)
    journal.sync()
    assert journal[-1] == entry(8)
    assert journal.stats()["pending"] == 2
    again = reopen_after_cut(folder, files)
    assert again[:] == [entry(i) for i in range(1, 11)]


@pytest.mark.parametrize("synced", [False, True])
def test_a_different_entry_truncates_and_its_tail_is_durable(tmp_path: Path, synced: bool) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    journal.deleteEntriesFrom(5)
    fill(journal, 6, 7)
    journal.add(*entry(8, term=2))
    journal.add(*entry(9, term=2, command=b"new"))
    expected = [*(entry(i) for i in range(1, 8)), entry(8, 2), entry(9, 2, b"new")]
    assert journal[:] == expected
    if synced:
        assert journal.sync() is True
        assert journal.stats()["truncations"] == 1
    again = reopen_after_cut(folder, files)
    # Unsynced, nothing new was acknowledged: the cut leaves the old log.
    assert again[:] == (expected if synced else [entry(i) for i in range(1, 11)])


def test_replacing_a_committed_entry_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "j"
    journal = DurableJournal(folder)
    fill(journal, 1, 10)
    journal.setRaftCommitIndex(8)
    journal.sync()
    journal.deleteEntriesFrom(5)
    journal.add(*entry(6))  # identical: fine
    with caplog.at_level(logging.CRITICAL), pytest.raises(Corrupted, match="safety violation"):
        journal.add(*entry(7, term=2))
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    assert journal[-1] == entry(6)  # nothing changed
    assert journal.sync() is False
    fill(journal, 7, 10)  # the leader's real entries still go in
    journal.close()
    assert DurableJournal(folder)[:] == [entry(i) for i in range(1, 11)]


def test_replacing_above_the_commit_index_is_allowed(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    fill(journal, 1, 10)
    journal.setRaftCommitIndex(8)
    journal.deleteEntriesFrom(5)
    fill(journal, 6, 8)
    journal.add(*entry(9, term=2))
    assert journal[-1] == entry(9, 2)
    journal.close()


def test_a_lowered_commit_index_still_protects_what_was_committed(tmp_path: Path) -> None:
    journal = DurableJournal(tmp_path / "j")
    fill(journal, 1, 10)
    journal.setRaftCommitIndex(10)
    journal.deleteEntriesFrom(5)
    fill(journal, 6, 8)
    journal.setRaftCommitIndex(8)  # PySyncObj clamps it to its (shortened) log
    with pytest.raises(Corrupted):
        journal.add(*entry(9, term=2))
    journal.close()


def test_the_stored_commit_index_protects_after_a_restart(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    journal = DurableJournal(folder)
    fill(journal, 1, 10)
    journal.setRaftCommitIndex(7)
    journal.onOneSecondTimer()
    journal.close()
    again = DurableJournal(folder)
    again.deleteEntriesFrom(2)
    with pytest.raises(Corrupted):
        again.add(*entry(3, term=5))
    again.close()


# -- term, vote and commit index ----------------------------------------------------------


def test_set_current_term_is_durable_at_once(tmp_path: Path) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    journal.setCurrentTerm(5, "node-b:7000")
    again = reopen_after_cut(folder, files)
    assert (again.getCurrentTerm(), again.getVotedForNodeId()) == (5, "node-b:7000")
    files = CrashFiles()
    again = DurableJournal(folder, files)
    again.setCurrentTerm(6, None)
    third = reopen_after_cut(folder, files)
    assert (third.getCurrentTerm(), third.getVotedForNodeId()) == (6, None)


def test_commit_index_is_persisted_lazily(tmp_path: Path) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    journal.setRaftCommitIndex(6)
    assert journal.getRaftCommitIndex() == 6
    assert reopen_after_cut(folder, files).getRaftCommitIndex() == 1

    files = CrashFiles()
    journal = DurableJournal(folder, files)
    journal.setRaftCommitIndex(6)
    fill(journal, 11, 12)
    journal.setRaftCommitIndex(12)
    journal.onOneSecondTimer()  # syncs 11..12 first: the index never outruns the entries
    again = reopen_after_cut(folder, files)
    assert again.getRaftCommitIndex() == 12
    assert len(again) == 12


def test_missing_or_damaged_meta_beside_a_journal_is_corruption(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    journal = DurableJournal(folder)
    fill(journal, 1, 3)
    journal.setCurrentTerm(3, "a")
    journal.close()
    meta = folder / "meta"
    good = meta.read_bytes()
    damaged = bytearray(good)
    damaged[-2] ^= 0x10
    meta.write_bytes(bytes(damaged))
    with pytest.raises(Corrupted, match="meta") as caught:
        DurableJournal(folder)
    assert caught.value.file == str(meta)
    meta.unlink()
    with pytest.raises(Corrupted, match="no meta"):
        DurableJournal(folder)
    meta.write_bytes(good)
    assert DurableJournal(folder).getCurrentTerm() == 3


def test_damaged_meta_without_a_journal_is_a_fresh_start(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    folder.mkdir()
    (folder / "meta").write_bytes(b"\x00" * 10)
    journal = DurableJournal(folder)
    assert journal.getCurrentTerm() == 0
    assert journal.notes and "meta" in journal.notes[0]
    journal.close()
    assert DurableJournal(folder).notes == []


# -- compaction and clear -----------------------------------------------------------------


def test_compaction_rewrites_durably_and_keeps_the_pending_tail(tmp_path: Path) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    journal.deleteEntriesFrom(7)  # 8..10 pending
    fill(journal, 8, 8)  # 8 restored, 9..10 still pending
    journal.deleteEntriesTo(3)
    assert [e[1] for e in journal] == [4, 5, 6, 7, 8]
    assert journal.stats()["rewrites"] >= 2
    again = reopen_after_cut(folder, files)
    assert [e[1] for e in again] == list(range(4, 11))


@pytest.mark.parametrize("fail_at", ["rename", "fsync_dir"])
def test_a_cut_during_compaction_keeps_the_old_file(tmp_path: Path, fail_at: str) -> None:
    class CutFiles(CrashFiles):
        armed = False

        def rename(self, src: str, dst: str) -> None:
            if self.armed and fail_at == "rename":
                self.crash()
            super().rename(src, dst)

        def fsync_dir(self, path: str) -> None:
            if self.armed and fail_at == "fsync_dir":
                self.crash()
            super().fsync_dir(path)

    folder, files = tmp_path / "j", CutFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    files.armed = True
    with pytest.raises(StorageFailed):
        journal.deleteEntriesTo(4)
    with pytest.raises(StorageFailed):
        journal.add(*entry(11))
    again = DurableJournal(folder, CrashFiles())
    assert again[:] == [entry(i) for i in range(1, 11)]
    assert not (folder / "journal.tmp").exists()


def test_clear_is_durable_at_once(tmp_path: Path) -> None:
    folder, files = tmp_path / "j", CrashFiles()
    journal = DurableJournal(folder, files)
    fill(journal, 1, 10)
    journal.sync()
    journal.clear()
    assert len(journal) == 0
    again = reopen_after_cut(folder, files)
    assert len(again) == 0
    fill(again, 100, 101)
    again.close()
    assert [e[1] for e in DurableJournal(folder)] == [100, 101]


# -- failures and threads -----------------------------------------------------------------


class _FailingFile(AppendFile):
    def __init__(self, inner: AppendFile, layer: FailingFiles) -> None:
        self._inner, self._layer, self.path = inner, layer, inner.path

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def sync(self) -> None:
        if self._layer.fail:
            raise OSError(5, "simulated fsync failure")
        self._inner.sync()

    def close(self) -> None:
        self._inner.close()


class FailingFiles(OsFiles):
    fail = False

    def open_append(self, path: str) -> AppendFile:
        return _FailingFile(super().open_append(path), self)


def test_a_failed_fsync_stops_the_journal(tmp_path: Path) -> None:
    files = FailingFiles()
    journal = DurableJournal(tmp_path / "j", files)
    fill(journal, 1, 3)
    files.fail = True
    with pytest.raises(StorageFailed):
        journal.sync()
    files.fail = False  # even if the disk recovers, the lost pages are not retried
    with pytest.raises(StorageFailed):
        journal.add(*entry(4))
    with pytest.raises(StorageFailed):
        journal.setCurrentTerm(2, None)
    journal.close()


class _SlowFile(AppendFile):
    def __init__(self, inner: AppendFile, layer: SlowFiles) -> None:
        self._inner, self._layer, self.path = inner, layer, inner.path

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    def sync(self) -> None:
        if self._layer.hold:
            self._layer.inside.set()
            assert self._layer.release.wait(10)
        self._inner.sync()

    def close(self) -> None:
        self._inner.close()


class SlowFiles(OsFiles):
    def __init__(self) -> None:
        self.hold = False
        self.inside = threading.Event()
        self.release = threading.Event()

    def open_append(self, path: str) -> AppendFile:
        return _SlowFile(super().open_append(path), self)


def test_sync_waits_for_another_threads_sync_in_flight(tmp_path: Path) -> None:
    """A False from sync() must also mean "durable": never return while another fsync runs."""
    files = SlowFiles()
    journal = DurableJournal(tmp_path / "j", files)
    fill(journal, 1, 3)
    files.hold = True
    answered = threading.Event()
    first = threading.Thread(target=journal.sync)
    second = threading.Thread(target=lambda: (journal.sync(), answered.set()))
    first.start()
    try:
        assert files.inside.wait(10)
        files.hold = False
        second.start()
        journal.add(*entry(4))  # add() never waits for the fsync
        time.sleep(0.1)
        assert not answered.is_set()
    finally:
        files.release.set()
        first.join(10)
        if second.ident is not None:
            second.join(10)
    assert answered.is_set()
    journal.close()


def test_sync_from_another_thread_while_adding(tmp_path: Path) -> None:
    folder = tmp_path / "j"
    journal = DurableJournal(folder)
    stop = threading.Event()

    def syncer() -> None:
        while not stop.is_set():
            journal.sync()
            journal.stats()

    thread = threading.Thread(target=syncer)
    thread.start()
    try:
        fill(journal, 1, 3000)
    finally:
        stop.set()
        thread.join(10)
    journal.close()
    assert DurableJournal(folder)[:] == [entry(i) for i in range(1, 3001)]


# -- the same list as MemoryJournal, across reopens and power cuts ----------------------------


class JournalMachine(RuleBasedStateMachine):
    """DurableJournal against MemoryJournal plus a model of the lazily truncated tail."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="amber-journal-"))
        self.folder = self.root / "j"
        self.files = CrashFiles()
        self.journal = DurableJournal(self.folder, self.files)
        self.memory = MemoryJournal()
        #: Deleted entries the file still holds (restored by identical adds).
        self.pending: list[Key] = []
        #: What a power cut leaves.
        self.durable: list[Key] = []
        self.term: tuple[int, str | None] = (0, None)

    def teardown(self) -> None:
        with contextlib.suppress(AmberError):  # a failed step may leave a dead journal
            self.journal.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _add(self, e: Key) -> None:
        self.journal.add(*e)
        self.memory.add(*e)
        if self.pending:
            if self.pending[0] == e:
                self.pending.pop(0)
            else:
                self.pending.clear()

    @rule(term=st.integers(1, 3), command=st.sampled_from([b"a", b"b", b""]), start=st.integers())
    def add(self, term: int, command: bytes, start: int) -> None:
        idx = self.memory[-1][1] + 1 if len(self.memory) else 1 + abs(start) % 5
        self._add((command, idx, term))

    @precondition(lambda self: self.pending)
    @rule()
    def re_add(self) -> None:
        self._add(self.pending[0])

    @rule(position=st.integers(-3, 12))
    def delete_from(self, position: int) -> None:
        before = self.memory[:]
        self.journal.deleteEntriesFrom(position)
        self.memory.deleteEntriesFrom(position)
        start = slice(position, None).indices(len(before))[0]
        self.pending = before[start:] + self.pending

    @rule(position=st.integers(-3, 12))
    def delete_to(self, position: int) -> None:
        start = slice(position, None).indices(len(self.memory))[0]
        self.journal.deleteEntriesTo(position)
        self.memory.deleteEntriesTo(position)
        if start:
            self.durable = self.memory[:] + self.pending

    @rule()
    def clear(self) -> None:
        self.journal.clear()
        self.memory.clear()
        self.pending = []
        self.durable = []

    @rule()
    def sync(self) -> None:
        self.journal.sync()
        self.durable = self.memory[:] + self.pending

    @rule(term=st.integers(0, 9), voted=st.sampled_from([None, "a:1", "b:2"]))
    def set_term(self, term: int, voted: str | None) -> None:
        self.journal.setCurrentTerm(term, voted)
        self.term = (term, voted)

    def _restart(self, expected: list[Key]) -> None:
        assert self.journal[:] == expected
        assert (self.journal.getCurrentTerm(), self.journal.getVotedForNodeId()) == self.term
        self.memory = MemoryJournal()
        for e in expected:
            self.memory.add(*e)
        self.pending = []
        self.durable = expected

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self.journal = DurableJournal(self.folder, self.files)
        self._restart(self.memory[:] + self.pending)

    @rule()
    def power_cut(self) -> None:
        self.files.crash()
        self.files = CrashFiles()
        self.journal = DurableJournal(self.folder, self.files)
        self._restart(self.durable)

    @invariant()
    def same_list(self) -> None:
        assert len(self.journal) == len(self.memory)
        assert self.journal[:] == self.memory[:]
        if len(self.memory):
            for item in (0, -1, len(self.memory) // 2):
                assert self.journal[item] == self.memory[item]
            assert self.journal[1:3] == self.memory[1:3]


TestJournalMachine = JournalMachine.TestCase
TestJournalMachine.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
