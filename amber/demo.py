"""``make run`` until the server exists: open a folder, write, read back, print.

Run twice: the second run finds the first run's writes (durability at work).
Usage: ``python -m amber.demo [DIR]`` (DIR: ./data by default).
"""

from __future__ import annotations

import sys

import amber
from amber.errors import AmberError, Locked


def main(path: str) -> None:
    with amber.open(path) as db:
        accounts = db.table("accounts")
        before = len(accounts)
        uid = amber.new_id()
        accounts.put(uid, {"user": "ada", "tags": ["x"]})
        merged = accounts.merge(uid, {"age": 36, "tags": None})
        entry = accounts.entry(uid)
        assert entry is not None
        print(f"opened {path!r} at revision {db.revision - 2} with {before} accounts")
        print(f"put + merge {uid} -> {dict(merged)} (version {entry.version})")
        print(f"now {len(accounts)} accounts; tables: {db.tables()}")
        adults = accounts.scan(where=[("age", ">=", 18)], limit=3)
        print(f"first adults: {[k for k, _ in adults.items]} (more: {adults.more})")


def run(argv: list[str]) -> int:
    """The exit code; a folder in use or damaged is a one-line message, not a traceback."""
    path = argv[0] if argv else "data"
    try:
        main(path)
    except Locked:
        print(
            f"error: the data folder {path!r} is in use by another process (a running "
            "amber serve or make run?): stop it, or give another folder: "
            "python -m amber.demo DIR",
            file=sys.stderr,
        )
        return 1
    except AmberError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
