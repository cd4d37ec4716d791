"""``make soak-memory``: 1M overwrites of one key against a real server, RSS every 100k.

Issue #12, item 12. The server runs with its default bounds (a 64 MiB watch
history), so RSS climbs while the history fills (~200k short writes) and must
then stay flat. Prints a table; exits 1 if RSS over the second half of the
run grew more than ``--flat-mib``, or if the run passed ``--max-seconds``.

    python tests/adversarial/soak_memory.py [--writes 1000000] [--every 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from server_support import ServerProcess, start_server

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    """The process's resident set size (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000)
    parser.add_argument("--pipeline", type=int, default=1000)
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--flat-mib", type=float, default=8.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amber-soak-memory-") as root:
        server = start_server(Path(root) / "data")
        try:
            return _soak(server, args)
        finally:
            server.stop()


def _soak(server: ServerProcess, args: argparse.Namespace) -> int:
    pid = server.proc.pid
    client = server.redis()
    started = time.monotonic()
    rows = [(0, rss_bytes(pid), 0.0)]
    print(f"{'writes':>9} {'RSS MiB':>8} {'delta':>7} {'seconds':>8}", flush=True)
    print(f"{0:>9} {rows[0][1] / MIB:>8.1f} {'':>7} {0.0:>8.1f}", flush=True)
    written = 0
    while written < args.writes:
        if time.monotonic() - started > args.max_seconds:
            print(f"stopped: over {args.max_seconds} s", flush=True)
            return 1
        pipe = client.pipeline(transaction=False)
        count = min(args.pipeline, args.writes - written)
        for i in range(written, written + count):
            pipe.set("soak", f"value-{i}")
        pipe.execute()
        written += count
        if written % args.every == 0 or written == args.writes:
            rss, took = rss_bytes(pid), time.monotonic() - started
            delta = (rss - rows[-1][1]) / MIB
            rows.append((written, rss, took))
            print(f"{written:>9} {rss / MIB:>8.1f} {delta:>+7.1f} {took:>8.1f}", flush=True)
    assert client.get("soak") == f"value-{args.writes - 1}".encode()
    half = min(rows, key=lambda row: abs(row[0] - args.writes // 2))
    grown = (rows[-1][1] - half[1]) / MIB
    verdict = "flat" if grown <= args.flat_mib else "GROWING"
    print(f"{verdict}: {grown:+.1f} MiB from {half[0]} to {rows[-1][0]} writes", flush=True)
    return 0 if grown <= args.flat_mib else 1


if __name__ == "__main__":
    sys.exit(main())
