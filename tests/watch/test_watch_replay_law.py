"""The replay law, as a property: state at r-1 + watched events from r = current state.

Random histories of puts, merges, deletes, transactions and table drops,
interleaved with snapshots and restarts, on a real database. For every
revision ``r`` still in the window, a watch from ``r`` across all tables,
applied *as diffs* to the state recorded at ``r - 1``, must give exactly the
current state — so the history is complete, in order, without duplicates,
and the diffs are right, across restarts too.
"""

from __future__ import annotations

import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import amber
from amber import Delete, DropTable, Merge, Put
from amber.errors import Compacted
from amber.model import merge_patch, thaw

State = dict[tuple[str, str], Any]

tables = st.sampled_from(["a", "b"])
keys = st.sampled_from(["k1", "k2", "k3", "x"])
# No nulls inside objects: merge patch cannot express "set a member to null".
scalars = st.one_of(st.integers(-5, 5), st.text("xyz", max_size=3), st.booleans())
docs = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from("pqr"), inner, max_size=3)
    ),
    max_leaves=6,
)
patches = st.dictionaries(st.sampled_from("pqr"), st.one_of(st.none(), docs), max_size=3)
ops = st.one_of(
    st.builds(Put, tables, keys, docs),
    st.builds(Merge, tables, keys, patches),
    st.builds(Delete, tables, keys),
)
steps = st.lists(
    st.one_of(
        ops.map(lambda op: [op]),
        st.lists(ops, min_size=2, max_size=4),
        st.builds(lambda t: [DropTable(t)], tables),
        st.sampled_from(["snapshot", "restart"]),
    ),
    min_size=1,
    max_size=25,
)


def current(db: amber.Database) -> State:
    return {
        (name, key): thaw(value) for name in db.tables() for key, value in db.table(name).items()
    }


def replay(db: amber.Database, start: int, state: State) -> State:
    state = dict(state)
    target = db.revision
    if start > target:
        return state
    last = start - 1
    # An idle watch reports progress, so a missing event fails instead of hanging.
    with db.watch(start_revision=start, progress_interval=0.2) as watch:
        for batch in watch.batches():
            assert batch.revision > last  # strictly increasing, one batch per revision
            last = batch.revision
            for event in batch.events:
                where = (event.table, event.key)
                if event.type in ("delete", "expire"):
                    assert state.pop(where) == event.prev_value
                else:
                    assert state.get(where) == (event.prev_value if event._had_prev else None)
                    state[where] = thaw(merge_patch(state.get(where), event.diff))
                    assert state[where] == event.value
            if batch.revision >= target:
                break
    return state


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(steps=steps, window=st.sampled_from([4, 1000]))
def test_events_from_any_revision_rebuild_the_current_state(steps: list[Any], window: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        settings_ = {"durability": "never", "jobs": False, "history_revisions": window}
        db = amber.open(folder, **settings_)
        try:
            states: dict[int, State] = {0: {}}
            for step in steps:
                if step == "snapshot":
                    db.snapshot()
                elif step == "restart":
                    db.close()
                    db = amber.open(folder, **settings_)
                else:
                    db.txn([], step)
                    states[db.revision] = current(db)
            final = current(db)
            for revision in range(1, db.revision + 2):
                try:
                    rebuilt = replay(db, revision, states[revision - 1])
                except Compacted as exc:
                    assert exc.oldest_available == max(1, db.revision - window + 1) > revision
                    continue
                assert rebuilt == final, revision
            assert db.stats()["watch"]["oldest_revision"] == max(1, db.revision - window + 1)
        finally:
            db.close()
