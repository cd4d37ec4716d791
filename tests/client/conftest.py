"""Reuse the real ``amber serve`` fixtures of the server tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from server_support import amber_server, server_factory, start_server

__all__ = ["amber_server", "server_factory", "start_server"]
