"""Eventual tables in one process: declaring, routing, stamps, and the replication pages."""

from __future__ import annotations

from pathlib import Path

import pytest

import amber
from amber.errors import InvalidArgument
from amber.model import pack
from amber.server.lww_sync import _decoded
from amber.store.batch import Lww
from amber.store.lww import ZERO


def test_an_eventual_table_lives_in_the_nodes_own_store(tmp_path: Path) -> None:
    with amber.open(tmp_path / "db") as db:
        presence = db.table("presence", consistency="eventual")
        assert db.consistency("presence") == "eventual"
        presence.put("ada", {"status": "online"})
        assert presence.merge("ada", {"device": "phone"}) == {"status": "online", "device": "phone"}
        assert db.table("presence").get("ada") == {"status": "online", "device": "phone"}
        assert db.revision == 0  # nothing in the strong store but the declaration's metadata
        assert (tmp_path / "db" / "eventual").is_dir()
        with db.watch("presence") as watch:
            presence.delete("ada")
            event = next(iter(watch))
        assert event.type == "delete" and event.origin == "local" and event.hlc.endswith("@local")
        assert db.tables() == ["presence"]
    with amber.open(tmp_path / "db") as db:  # recovered, still eventual
        assert db.consistency("presence") == "eventual" and "ada" not in db.table("presence")


def test_what_eventual_tables_refuse(tmp_path: Path) -> None:
    with amber.open(tmp_path / "db") as db:
        db.table("users").put("u", 1)
        presence = db.table("presence", consistency="eventual")
        with pytest.raises(InvalidArgument, match="already holds keys"):
            db.table("users", consistency="eventual")
        with pytest.raises(InvalidArgument, match="set when it is created"):
            db.table("presence", consistency="strong")
        with pytest.raises(InvalidArgument, match="consistency must be"):
            db.table("x", consistency="sometimes")
        with pytest.raises(InvalidArgument, match="both"):
            db.txn([], [amber.Put("users", "a", 1), amber.Put("presence", "b", 1)])
        with pytest.raises(InvalidArgument, match="conditions"):
            presence.put("k", 1, if_revision=3)
        with pytest.raises(InvalidArgument, match="TTL"):
            presence.merge("k", {"a": 1}, ttl=5)
        assert "k" not in presence and db.table("users").get("a") is None


def test_eventual_tables_need_a_place_for_their_log() -> None:
    with amber.open("memory://") as db:  # memory: the eventual store is in memory too
        db.table("p", consistency="eventual").put("k", 1)
        assert db.table("p").get("k") == 1


def test_replication_pages_are_bounded_and_joined_states_change_nothing_twice(
    tmp_path: Path,
) -> None:
    with amber.open(tmp_path / "a") as a, amber.open(tmp_path / "b") as b:
        big = "x" * 400_000
        pa = a.table("p", consistency="eventual")
        b.table("p", consistency="eventual")
        for i in range(5):
            pa.put(f"k{i}", big)
        source = a.eventual_store()
        following, states = source.lww_changes(0, 500, max_bytes=1 << 20)
        assert len(states) == 3  # stops once about 1 MiB is in the page
        rest_next, rest = source.lww_changes(following, 500, max_bytes=1 << 20)
        assert len(rest) == 2 and rest_next > following
        target = b.eventual_store()
        ops = [
            Lww(t, k, "state", [p, v, base, f, e], ZERO) for t, k, p, v, base, f, e in states + rest
        ]
        target.commit_checked(ops)
        assert [b.table("p").get(f"k{i}") == big for i in range(5)] == [True] * 5
        mark = target.lww_changes(0, 500, max_bytes=1 << 30)[0]
        target.commit_checked(ops)  # the same states again: no change, nothing to send on
        assert target.lww_changes(mark, 500)[1] == []


def test_a_pulled_state_that_does_not_decode_is_refused() -> None:
    good = ["p", "k", True, 1, [5, 0, "n1"], {}, None]
    assert _decoded(pack(good))[:2] == ("p", "k")
    for bad in (
        ["p", "k", "yes", 1, [5, 0, "n1"], {}, None],
        ["p", "k", True, 1, [5, "0", "n1"], {}, None],
        ["p", "k", True, 1, [5, 0, "n1"], [], None],
        ["bad name", "k", True, 1, [5, 0, "n1"], {}, None],
        ["p", "k", True, 1, [5, 0, "n1"], {}, "soon"],
    ):
        with pytest.raises((ValueError, TypeError)):
            _decoded(pack(bad))


def test_reads_of_eventual_keys_are_known_by_their_table_bare_keys_included() -> None:
    """Which reads skip the Raft barrier: the key's table, split as RESP splits it."""
    from amber.server.commands import REGISTRY
    from amber.server.commands.session import _eventual_key

    get = REGISTRY.get(b"GET")
    assert get is not None
    with amber.open("memory://") as db:
        db.table("default", consistency="eventual")
        assert _eventual_key(db, get, [b"GET", b"bare"])  # a bare key is table "default"
        assert not _eventual_key(db, get, [b"GET", b"users:bare"])
        assert not _eventual_key(db, get, [b"GET", b"\xff"])  # not UTF-8: the command says so
