"""Fixtures for the server tests; the process helpers live in :mod:`server_support`.

Test modules import ``ServerFactory`` / ``ServerProcess`` from here
(``from conftest import …``), so the names are re-exported.
"""

from __future__ import annotations

from server_support import (
    ServerFactory,
    ServerProcess,
    amber_server,
    redis_server,
    server_factory,
    start_server,
)

__all__ = [
    "ServerFactory",
    "ServerProcess",
    "amber_server",
    "redis_server",
    "server_factory",
    "start_server",
]
