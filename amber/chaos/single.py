"""One plain ``amber serve`` (no Raft) on the volatile file layer, for the ``crash`` nemesis.

:class:`SingleServer` is a :class:`~amber.replication.local.LocalCluster`
of one node whose command line has no cluster flags and whose environment
sets ``AMBER_TEST_VOLATILE_FILES=1`` (see :mod:`amber.server.server`): the
server keeps every un-synced byte of its log in memory, so the nemesis's
SIGKILL loses exactly what a power cut would. Start, kill and restart work
as for a cluster member; the node has no leader, so the harness asks
:func:`ready` (a ``PING``) instead of looking for one.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterable
from pathlib import Path

import redis

from ..persistence.volatile import ENV as VOLATILE_FILES_ENV
from ..replication.local import LocalCluster, LocalNode
from .wire import resp_client

__all__ = ["SingleServer", "ready"]


class SingleServer(LocalCluster):
    """A single non-cluster server with the volatile file layer; ``nodes == [n1]``."""

    def __init__(
        self,
        folder: Path,
        *,
        base_port: int,
        durability: str = "always",
        log_level: str = "warning",
    ) -> None:
        super().__init__(folder, 1, base_port=base_port, durability=durability, log_level=log_level)

    def command(self, node: LocalNode, members: Iterable[LocalNode] | None = None) -> list[str]:
        # `env` execs the server in place, so the pid LocalCluster kills is the server's.
        return [
            shutil.which("env") or "/usr/bin/env", f"{VOLATILE_FILES_ENV}=1",
            sys.executable, "-m", "amber.cli", "serve",
            "--data", str(node.data),
            "--bind", node.host,
            "--port", str(node.resp_port),
            "--http-port", "-1",
            "--kvtext-port", "-1",
            "--durability", self.durability,
            "--log-level", self.log_level,
        ]  # fmt: skip


def ready(node: LocalNode, timeout: float = 1.0) -> bool:
    """Whether ``node`` answers ``PING`` now."""
    if not node.running:
        return False
    client = resp_client(node, timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()
