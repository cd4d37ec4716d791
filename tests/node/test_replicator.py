"""The Replicator seam: the same conformance checks against LocalLog and Raft.

A node composes either; what it and ``Database`` rely on — ``submit``
answers a ``Completion``, ``wait``/``wait_async`` give the result once
applied, one thread's submits apply in order, the optional cluster
capabilities are ``None`` exactly when not in a cluster, the stats have one
shape — must hold for both.
"""

from __future__ import annotations

import ast
import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import amber
from amber.database import Put
from amber.errors import Closed, InvalidArgument
from amber.node.node import Node
from amber.node.replicator import Completion
from amber.store.batch import Batch, encode_body

sys.path.insert(0, str(Path(__file__).parent.parent / "replication"))

from embedded_cluster import open_trio, wait_for_leader

PACKAGE = Path(amber.__file__).parent


@pytest.fixture(params=["local", "raft"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[amber.Database]:
    if request.param == "local":
        with amber.open(tmp_path / "db", jobs=False) as local:
            yield local
        return
    dbs = open_trio(tmp_path)
    try:
        yield wait_for_leader(dbs)
    finally:
        for member in dbs:
            member.close()


def _node(db: amber.Database) -> Node:
    return db._node


def _put(value: int) -> Batch:
    return Batch((Put("t", "k", value),))


def test_submit_answers_a_completion_that_wait_finishes(db: amber.Database) -> None:
    node = _node(db)
    completion = node.submit(_put(1))
    assert isinstance(completion, Completion)
    result = node.replicator.wait(completion)
    assert completion.done and completion.error is None and completion.result is result
    assert result.revision == db.revision and db.table("t").get("k") == 1


def test_wait_async_gives_the_same_result(db: amber.Database) -> None:
    node = _node(db)

    async def main() -> int:
        first = await node.acommit(_put(1), encode_body(_put(1)))
        second = await node.replicator.wait_async(node.submit(_put(2)))
        return second.revision - first.revision

    assert asyncio.run(main()) == 1
    assert db.table("t").get("k") == 2


def test_one_threads_submits_apply_in_the_order_submitted(db: amber.Database) -> None:
    node = _node(db)
    completions = [node.submit(_put(i)) for i in range(20)]
    revisions = [node.replicator.wait(c).revision for c in completions]
    assert revisions == sorted(revisions) and len(set(revisions)) == 20
    db.barrier()
    assert db.table("t").get("k") == 19


def test_cluster_capabilities_are_none_exactly_outside_a_cluster(db: amber.Database) -> None:
    replicator = _node(db).replicator
    clustered = replicator.name == "raft"
    assert (replicator.status() is not None) is clustered
    assert (replicator.membership() is not None) is clustered
    assert (db.cluster_status() is not None) is clustered
    assert replicator.is_leader  # the fixture's raft member is the leader
    if not clustered:
        with pytest.raises(InvalidArgument):
            db.cluster_change("transfer")


def test_stats_have_one_shape(db: amber.Database) -> None:
    db.table("t").put("k", 1)
    stats = db.stats()
    assert {"revision", "applied_seq", "backend", "durability", "pipeline", "jobs", "watch"} <= set(
        stats
    )
    assert set(stats["pipeline"]) == {
        "batches",
        "flushes",
        "fsyncs",
        "log_bytes",
        "last_seq",
        "failed",
    }
    assert ("cluster" in stats) is (stats["backend"] == "raft")
    assert stats["backend"] in repr(db)


def test_stopped_and_closed_replicators_refuse_writes(db: amber.Database) -> None:
    node = _node(db)
    node.replicator.stop_writes()
    node.replicator.stop_writes()  # idempotent
    if node.replicator.name == "raft":
        with pytest.raises(Closed):  # the local log refuses once closed (it settles in close)
            node.submit(_put(1))
    db.close()
    with pytest.raises(Closed):
        node.submit(_put(1))


def test_pysyncobj_is_imported_only_inside_replication() -> None:
    outside = []
    for path in PACKAGE.rglob("*.py"):
        if path.relative_to(PACKAGE).parts[0] == "replication":
            continue
        for stmt in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(stmt, ast.Import):
                names = [alias.name for alias in stmt.names]
            elif isinstance(stmt, ast.ImportFrom) and stmt.module and stmt.level == 0:
                names = [stmt.module]
            if any(name.split(".")[0] == "pysyncobj" for name in names):
                outside.append(str(path.relative_to(PACKAGE)))
    assert outside == []
