"""Hypothesis drives the database against a plain-dict model, reopening as it goes."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import amber
from amber import Compare, Delete, Merge, Put
from amber.errors import ConditionFailed

TABLES = st.sampled_from(["a", "b"])
KEYS = st.sampled_from(["k1", "k2", "k3", "x/1", "x/2", "é"])
SCALARS = st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["p", "q", "r"]), inner, max_size=3)
    ),
    max_leaves=6,
)
PATCHES = st.dictionaries(st.sampled_from(["p", "q", "r"]), VALUES, max_size=3) | VALUES


def model_merge(target: Any, patch: Any) -> Any:
    """RFC 7396 written naively and independently of amber.model."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = model_merge(result.get(name), value)
    return result


class DatabaseVsDict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="amber-stateful-")
        self.db = amber.open(self.path, durability="never", jobs=False)
        #: table -> key -> [value, create_revision, mod_revision, version]
        self.model: dict[str, dict[str, list[Any]]] = {}
        self.revision = 0

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def _write(self, table: str, key: str, value: Any) -> None:
        rows = self.model.setdefault(table, {})
        old = rows.get(key)
        if old is None:
            rows[key] = [value, self.revision, self.revision, 1]
        else:
            rows[key] = [value, old[1], self.revision, old[3] + 1]

    @rule(table=TABLES, key=KEYS, value=VALUES)
    def put(self, table: str, key: str, value: Any) -> None:
        assert self.db.table(table).put(key, value) == self.revision + 1
        self.revision += 1
        self._write(table, key, value)

    @rule(table=TABLES, key=KEYS, patch=PATCHES)
    def merge(self, table: str, key: str, patch: Any) -> None:
        old = self.model.get(table, {}).get(key)
        expected = model_merge(old[0] if old else None, patch)
        assert self.db.table(table).merge(key, patch) == expected
        self.revision += 1
        self._write(table, key, expected)

    @rule(table=TABLES, key=KEYS)
    def delete(self, table: str, key: str) -> None:
        existed = key in self.model.get(table, {})
        assert self.db.table(table).delete(key) is existed
        if existed:
            self.revision += 1
            del self.model[table][key]

    @rule(table=TABLES, key=KEYS, value=VALUES, guess=st.integers(0, 3))
    def compare_and_set(self, table: str, key: str, value: Any, guess: int) -> None:
        old = self.model.get(table, {}).get(key)
        version = old[3] if old else 0
        try:
            self.db.table(table).put(key, value, if_version=guess)
        except ConditionFailed:
            assert guess != version
        else:
            assert guess == version
            self.revision += 1
            self._write(table, key, value)

    @rule(table=TABLES, k1=KEYS, k2=KEYS, value=VALUES, expect_absent=st.booleans())
    def txn(self, table: str, k1: str, k2: str, value: Any, expect_absent: bool) -> None:
        rows = self.model.get(table, {})
        holds = (k1 not in rows) is expect_absent
        try:
            self.db.txn(
                [Compare(table, k1, "exists", "=", not expect_absent)],
                [Put(table, k1, value), Merge(table, k2, {"t": 1}), Delete(table, "k3")],
            )
        except ConditionFailed:
            assert not holds
            return
        assert holds
        self.revision += 1
        self._write(table, k1, value)
        old2 = self.model[table].get(k2)
        self._write(table, k2, model_merge(old2[0] if old2 else None, {"t": 1}))
        self.model[table].pop("k3", None)

    @rule(table=TABLES)
    def drop(self, table: str) -> None:
        self.db.drop_table(table)
        if self.model.get(table):
            self.revision += 1
        self.model.pop(table, None)

    @rule()
    def snapshot(self) -> None:
        self.db.snapshot()

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = amber.open(self.path, durability="never", jobs=False)

    @precondition(lambda self: True)
    @invariant()
    def same_contents(self) -> None:
        assert self.db.revision == self.revision
        for table in ("a", "b"):
            rows = self.model.get(table, {})
            handle = self.db.table(table)
            assert dict(handle.items()) == {k: v[0] for k, v in rows.items()}
            for key, (value, create, mod, version) in rows.items():
                entry = handle.entry(key)
                assert entry is not None
                assert (entry.value, entry.create_revision, entry.mod_revision, entry.version) == (
                    value,
                    create,
                    mod,
                    version,
                )
            assert len(handle) == len(rows)


DatabaseVsDict.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestDatabaseVsDict = DatabaseVsDict.TestCase
