"""``Scope.mark``/``rollback`` (a failed command inside EXEC) undo exactly that command.

The undo log replaced a copy of everything the scope knew per queued command
(O(n²) over a MULTI block); this checks that what a rollback restores is what
such a copy held, over random commands.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

import amber
from amber.server.commands.scope import Scope


@pytest.fixture()
def db() -> Iterator[Any]:
    database = amber.open("memory://")
    database.table("t").put("seen", "1")
    database.table("u").put("x", {"a": 1})
    yield database
    database.close()


def _known(scope: Scope) -> tuple[dict[Any, Any], set[str], int]:
    """What the scope knows, with deferred updates as their lists (not identities)."""
    local = {
        where: (known.updates() if hasattr(known, "updates") else known)
        for where, known in scope.local.items()
    }
    return local, set(scope.dropped), len(scope.ops)


def _step(scope: Scope, rng: random.Random) -> None:
    table = rng.choice(["t", "u"])
    key = rng.choice(["seen", "x", "a", "b"])
    kind = rng.choice(["put", "merge", "update", "delete", "drop", "read", "read"])
    if kind == "put":
        scope.put(table, key, str(rng.randrange(100)))
    elif kind == "merge":
        scope.merge(table, key, {"m": rng.randrange(100)})
    elif kind == "update":
        scope.update(table, key, "incr2", rng.randrange(1, 5))
    elif kind == "delete":
        scope.delete(table, key)
    elif kind == "drop":
        scope.drop_table(table)
    else:
        scope.get(table, key)


@pytest.mark.parametrize("seed", range(40))
def test_rollback_restores_what_the_mark_saw(db: Any, seed: int) -> None:
    rng = random.Random(seed)
    scope = Scope(db)
    for _ in range(30):
        mark = scope.mark()
        before = _known(scope)
        for _ in range(rng.randrange(1, 5)):  # one queued command may buffer several ops
            _step(scope, rng)
        if rng.random() < 0.5:
            scope.rollback(mark)
            assert _known(scope) == before
