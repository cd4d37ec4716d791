"""Reuse the real ``amber serve`` fixtures of the server tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).parent.parent / "server" / "conftest.py"
_SPEC = importlib.util.spec_from_file_location("amber_tests_server_fixtures", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
fixtures = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = fixtures
_SPEC.loader.exec_module(fixtures)

amber_server = fixtures.amber_server
server_factory = fixtures.server_factory
start_server = fixtures.start_server
