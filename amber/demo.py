"""``make run`` until the server exists: open a folder, write, read back, print.

Run twice: the second run finds the first run's writes (durability at work).
"""

from __future__ import annotations

import sys

import amber


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


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data")
