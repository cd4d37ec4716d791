"""Eventual tables over RESP: ``AMBER.TABLE`` (a table's consistency) and ``AMBER.LWW``.

``AMBER.TABLE name [CONSISTENCY strong|eventual]`` answers the table's
consistency, declaring it first when asked (once, when the table is
created: through the cluster's log, so every member agrees).
``AMBER.TABLES`` lists every table with its consistency and key count.

``AMBER.LWW`` is how members replicate eventual tables
(:mod:`amber.server.lww_sync`): ``PULL node incarnation after limit`` (a page
of states), ``STATUS`` (JSON: peers, cursors, watermarks, refusals), and
``CLOCK-OFFSET ms`` — only on a server started with
``--allow-clock-offset``: it shifts this member's eventual clock, for
fault-injection tests of clock skew.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from .registry import REGISTRY, CommandError, arity_error
from .session import error_reply

command = REGISTRY.command


@command("AMBER.TABLE", -2, "write", group="amber")
def amber_table(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``AMBER.TABLE name [CONSISTENCY strong|eventual]``: the table's consistency."""
    db = session.state.db
    name = args[1].decode(errors="replace")
    if len(args) == 2:
        return db.consistency(name).encode()
    if len(args) != 4 or args[2].upper() != b"CONSISTENCY":
        raise CommandError("usage: AMBER.TABLE name [CONSISTENCY strong|eventual]")
    wanted = args[3].decode(errors="replace").lower()

    async def run() -> Any:
        try:
            await asyncio.to_thread(db.table, name, wanted)
        except Exception as exc:
            return error_reply(exc)
        return db.consistency(name).encode()

    return asyncio.get_running_loop().create_task(run())


@command("AMBER.TABLES", 1, "readonly", group="amber")
def amber_tables(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Every table: ``[name, consistency, keys]`` each."""
    db = session.state.db
    return [[n.encode(), db.consistency(n).encode(), len(db.table(n))] for n in db.tables()]


@command("AMBER.LWW", -2, "admin", group="amber")
def amber_lww(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``AMBER.LWW PULL node incarnation after limit | STATUS | CLOCK-OFFSET ms``."""
    sync = session.state.lww_sync
    sub = args[1].upper()
    if sub == b"STATUS":
        if sync is None:
            raise CommandError("this server replicates no eventual tables (not in a cluster)")
        return json.dumps(sync.status()).encode()
    if sub == b"PULL":
        if len(args) != 6:
            raise arity_error("amber.lww|pull")
        if sync is None:
            raise CommandError("this server replicates no eventual tables (not in a cluster)")
        try:
            after, limit = int(args[4]), int(args[5])
        except ValueError:
            raise CommandError("AMBER.LWW PULL: after and limit are integers") from None
        if after < 0 or limit < 1:
            raise CommandError("AMBER.LWW PULL: after >= 0, limit >= 1")
        return sync.serve(args[3].decode(errors="replace"), after, limit)
    if sub == b"CLOCK-OFFSET":
        if len(args) != 3:
            raise arity_error("amber.lww|clock-offset")
        if not session.state.allow_clock_offset:
            raise CommandError("clock offsets are off: start the server with --allow-clock-offset")
        try:
            offset = int(args[2])
        except ValueError:
            raise CommandError("AMBER.LWW CLOCK-OFFSET takes milliseconds") from None
        clock = session.state.db.eventual_store().clock
        clock.offset_ms = offset
        return b"OK"
    raise CommandError("unknown AMBER.LWW subcommand; try PULL, STATUS, CLOCK-OFFSET")
