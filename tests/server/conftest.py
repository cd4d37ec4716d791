"""Fixtures for the server tests; the process helpers live in :mod:`server_support`.

Test modules import ``ServerFactory`` / ``ServerProcess`` from
``server_support``, never from ``conftest``: with one ``conftest`` per folder
and no packages, ``conftest`` names whichever folder's was imported first.
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
