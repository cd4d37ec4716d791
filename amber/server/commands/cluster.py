"""Cluster commands: ``AMBER.CLUSTER`` and Redis Cluster's ``READONLY``/``READWRITE``.

In a cluster every read waits for a Raft log barrier first (linearizable,
see :mod:`amber.replication.cluster`). ``READONLY`` switches the connection
to stale reads — this replica's state, no round trip — as Redis Cluster's
``READONLY`` lets a client read from a replica; ``READWRITE`` switches back.
Alone, both only set the flag: every read is already linearizable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .registry import REGISTRY, CommandError, arity_error
from .replies import Simple
from .session import error_reply

command = REGISTRY.command
OK = Simple("OK")


@command("AMBER.CLUSTER", -1, "admin", group="amber")
def amber_cluster(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``AMBER.CLUSTER [STATUS | ADD id host:port | REMOVE id | TRANSFER [id]]``.

    STATUS (the default) answers JSON: members, leader, term, commit and
    applied index, lag, health. The changes wait for the cluster's
    confirmation off the event loop and answer ``OK``.
    """
    db = session.state.db
    action = args[1].decode(errors="replace").lower() if len(args) > 1 else "status"
    if action == "status":
        if len(args) > 2:
            raise arity_error("amber.cluster")
        status = db.cluster_status()
        if status is None:
            raise CommandError("this server is not in a cluster (start it with --node-id)")
        return json.dumps(status).encode()
    if action not in ("add", "remove", "transfer"):
        raise CommandError(
            f"unknown AMBER.CLUSTER subcommand {action!r}; try STATUS, ADD, REMOVE, TRANSFER"
        )
    words = [a.decode(errors="replace") for a in args[2:]]

    async def run() -> Any:
        try:
            await asyncio.to_thread(db.cluster_change, action, *words)
        except Exception as exc:
            return error_reply(exc)
        return OK

    return asyncio.get_running_loop().create_task(run())


@command("READONLY", 1, "fast", group="cluster")
def readonly(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Stale reads on this connection: this replica's state, without a log barrier."""
    session.stale_reads = True
    return OK


@command("READWRITE", 1, "fast", group="cluster")
def readwrite(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Linearizable reads again on this connection (the default)."""
    session.stale_reads = False
    return OK
