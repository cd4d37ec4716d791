"""Fixtures for the persistence tests; helpers live in ``persistence_support``."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from persistence_support import BACKENDS, Harness


@pytest.fixture(params=sorted(BACKENDS))
def harness(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[Harness]:
    """Each backend kind in turn, for the conformance suite."""
    h = BACKENDS[request.param](tmp_path)
    yield h
    h.close_all()


@pytest.fixture
def folder(tmp_path: pathlib.Path) -> pathlib.Path:
    """Where a test's log backend keeps its data."""
    return tmp_path / "data"
