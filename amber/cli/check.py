"""``amber check``: verify a data folder offline, without changing it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import amber
from amber.errors import AmberError

from .app import app, console, fail


@app.command()
def check(
    data: Annotated[str, typer.Argument(help="The data folder or backend URL to verify.")],
) -> None:
    """Open the data folder, replay it fully, and report revision, tables and keys.

    Exits 1 with the file and offset when anything is damaged. Recovery may
    truncate a torn tail (the last, unacknowledged write cut short by a crash),
    which it reports.
    """
    target = data
    if "://" not in target and not Path(target).is_dir():
        fail(f"no data folder at {target}")
    try:
        with amber.open(target, jobs=False) as db:
            for note in db.recovery_notes:
                console.print(f"[yellow]repaired:[/] {note}")
            tables = db.tables()
            console.print(f"ok: revision {db.revision}, {len(tables)} tables")
            for name in tables:
                console.print(f"  {name}: {len(db.table(name))} keys")
    except AmberError as exc:
        fail(f"{type(exc).__name__}: {exc}")
