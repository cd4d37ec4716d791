"""What Amber changes in PySyncObj: the restricted unpickler and the durable replace."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pysyncobj.pickle as pso_pickle
import pytest
from pysyncobj.node import TCPNode

from amber.replication import hardening


def test_every_message_shape_pysyncobj_sends_still_unpickles():
    messages = [
        {"type": "append_entries", "term": 3, "commit_index": 7, "prevLogIdx": 6,
         "prevLogTerm": 2, "entries": [(b"\x00payload", 7, 3), (b"", 8, 3)]},
        {"type": "next_node_idx", "next_node_idx": 9, "reset": False, "success": True},
        {"type": "append_entries", "serialized": (b"chunk", True, False), "term": 1},
        {"cluster": {TCPNode("127.0.0.1:7390"), TCPNode("127.0.0.1:7391")}},
        ["add", "127.0.0.1:7392", TCPNode("127.0.0.1:7392")],
        "127.0.0.1:7390",
        b"",
        bytearray(b"x"),
        frozenset({1, 2}),
    ]  # fmt: skip
    for message in messages:
        assert hardening.restricted_loads(pso_pickle.dumps(message)) == message


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [_Boom(), {"x": _Boom()}, Path("/etc/passwd")])
def test_anything_else_is_refused_without_running_it(payload: object):
    data = pickle.dumps(payload, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle"):
        hardening.restricted_loads(data)


def test_install_routes_pysyncobj_through_the_restricted_unpickler():
    hardening.install()
    import pysyncobj.tcp_connection as tcp

    assert tcp.pickle.loads is hardening.restricted_loads
    with pytest.raises(pickle.UnpicklingError):
        tcp.pickle.loads(pickle.dumps(_Boom(), protocol=2))


def test_pysyncobj_dump_renames_are_durable_and_ordered_for_a_guarded_dump(tmp_path):
    hardening.install()
    from pysyncobj import serializer

    replace = serializer.atomicReplace
    # Unguarded (another PySyncObj user in the process): a plain durable rename.
    other = tmp_path / "other.bin"
    (tmp_path / "other.bin.tmp").write_bytes(b"new")
    replace(str(tmp_path / "other.bin.tmp"), str(other))
    assert other.read_bytes() == b"new"

    dump = tmp_path / "snapshot.amber"
    dump.write_bytes(b"current")
    guard = hardening.guard_dump(str(dump))
    try:
        # The serializer's own temporary file: its owner writes the dump, so no rename.
        (tmp_path / "snapshot.amber.tmp").write_bytes(b"stale")
        replace(str(tmp_path / "snapshot.amber.tmp"), str(dump))
        assert dump.read_bytes() == b"current"
        # A snapshot received from the leader: renamed in, and the generation moves
        # on, so a background write begun before it knows not to replace it.
        (tmp_path / "snapshot.amber.1.tmp").write_bytes(b"leader")
        before = guard.generation
        replace(str(tmp_path / "snapshot.amber.1.tmp"), str(dump))
        assert dump.read_bytes() == b"leader"
        assert guard.generation == before + 1
    finally:
        hardening.unguard_dump(guard)
    (tmp_path / "snapshot.amber.tmp").write_bytes(b"plain again")
    replace(str(tmp_path / "snapshot.amber.tmp"), str(dump))
    assert dump.read_bytes() == b"plain again"


def test_durable_replace_moves_the_file_over_the_old_one(tmp_path: Path):
    (tmp_path / "dump").write_bytes(b"old")
    (tmp_path / "dump.tmp").write_bytes(b"new")
    hardening.durable_replace(str(tmp_path / "dump.tmp"), str(tmp_path / "dump"))
    assert (tmp_path / "dump").read_bytes() == b"new"
    assert not (tmp_path / "dump.tmp").exists()
