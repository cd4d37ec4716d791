"""``amber backup | restore | export | import``: copy a database's state out and back in.

``backup``/``restore`` are physical and revision-exact (the snapshot format,
see :mod:`amber.backup`); ``export``/``import`` are JSON lines, one key per
line. SRC and TARGET are a data folder or any backend URL (``sqlite:///…``,
``postgresql://…``, ``s3://…``); a backup DEST/SRC is a file or an
``s3://bucket/key`` object.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import redis
import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from amber import backup as backups
from amber.errors import AmberError, Locked

from .app import app, console, errors, fail


@contextmanager
def _bar(what: str, show: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar (on stderr) fed by (done, total) calls.

    Drawn from the first call on, not before: an error found at once (a
    locked folder, a missing file) is printed alone, without an empty bar.
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("keys"),
        TimeElapsedColumn(),
        console=errors,
        disable=not show,
        transient=False,
    )
    task = progress.add_task(what, total=None)
    started = False

    def update(done: int, total: int) -> None:
        nonlocal started
        if not started:
            started = True
            progress.start()
        progress.update(task, completed=done, total=total or None)

    try:
        yield update
    finally:
        if started:
            progress.stop()


def _explain(exc: AmberError, source: str) -> str:
    if isinstance(exc, Locked):
        return (
            f"{source} is open in another process: stop it first, or back it up from "
            "inside that process with amber.backup.backup(db, DEST)"
        )
    return f"{type(exc).__name__}: {exc}"


@app.command()
def backup(
    source: Annotated[str, typer.Argument(help="Data folder or backend URL to back up.")],
    dest: Annotated[str, typer.Argument(help="Backup file, or s3://bucket/key.")],
) -> None:
    """Write SOURCE's state at one revision to DEST (a file or an s3:// object).

    SOURCE is a data folder or backend URL not open elsewhere, or the
    redis:// URL of a running amber serve: the server then backs itself up
    online (AMBER.BACKUP) and DEST is a file name inside the server's backup
    folder (--backup-dir, default DATA/backups) or an s3:// object under its
    --backup-s3. DEST is replaced atomically.
    """
    if source.startswith(("redis://", "rediss://")):
        _backup_online(source, dest)
        return
    try:
        with _bar("backup") as progress:
            info = backups.backup(source, dest, progress=progress)
    except AmberError as exc:
        fail(_explain(exc, source))
    console.print(
        f"backed up revision {info.revision}: {info.tables} tables, {info.keys} keys, "
        f"{info.bytes} bytes → {info.location}",
        highlight=False,
    )


@app.command()
def restore(
    src: Annotated[str, typer.Argument(help="Backup file, or s3://bucket/key.")],
    target: Annotated[str, typer.Argument(help="New, empty data folder or backend URL.")],
) -> None:
    """Restore the backup SRC into the empty database TARGET (same state and revision)."""
    try:
        with _bar("restore") as progress:
            info = backups.restore(src, target, progress=progress)
    except AmberError as exc:
        fail(_explain(exc, target))
    console.print(
        f"restored revision {info.revision}: {info.tables} tables, {info.keys} keys → {target}",
        highlight=False,
    )


@app.command("export")
def export(
    source: Annotated[str, typer.Argument(help="Data folder or backend URL.")],
    out: Annotated[
        str, typer.Option("--out", "-o", help="File to write; '-' (default) for stdout.")
    ] = "-",
) -> None:
    """Write every key of SOURCE, at one revision, as JSON lines."""
    to_file = out != "-"
    try:
        with _bar("export", show=to_file) as progress:
            count = backups.export_jsonl(source, out if to_file else sys.stdout, progress=progress)
    except AmberError as exc:
        fail(_explain(exc, source))
    except OSError as exc:
        fail(f"could not write {out}: {exc}")
    if to_file:
        console.print(f"exported {count} keys → {out}", highlight=False)


@app.command("import")
def import_(
    target: Annotated[str, typer.Argument(help="Data folder or backend URL to write into.")],
    src: Annotated[str, typer.Argument(help="JSON-lines file; '-' for stdin.")],
    batch: Annotated[int, typer.Option(help="Keys per transaction.")] = 1000,
) -> None:
    """Put every line of a JSON-lines export (from amber export) into TARGET."""
    try:
        with _bar("import") as progress:
            count = backups.import_jsonl(
                target, sys.stdin if src == "-" else src, batch=batch, progress=progress
            )
    except AmberError as exc:
        fail(_explain(exc, target))
    except OSError as exc:
        fail(f"could not read {src}: {exc}")
    console.print(f"imported {count} keys → {target}", highlight=False)


def _backup_online(url: str, dest: str) -> None:
    """Ask a running server to back itself up (it keeps serving meanwhile)."""
    try:
        with (
            console.status(f"backing up {url} → {dest}"),
            redis.Redis.from_url(url, socket_timeout=3600) as conn,
        ):
            reply = conn.execute_command("AMBER.BACKUP", dest)
    except redis.RedisError as exc:
        fail(f"backup through {url} failed: {exc}")
    info = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=True))
    info = {k.decode() if isinstance(k, bytes) else k: v for k, v in info.items()}
    location = info["location"]
    location = location.decode() if isinstance(location, bytes) else location
    console.print(
        f"backed up revision {info['revision']}: {info['tables']} tables, {info['keys']} keys, "
        f"{info['bytes']} bytes → {location} (on the server)",
        highlight=False,
    )
