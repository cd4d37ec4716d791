"""Amber vs Redis, side by side, with redis-benchmark (``make bench``).

Starts Debian's ``redis-server`` (AOF on, ``appendfsync always``, loopback,
its own temp dir) and ``amber serve --durability always`` (its own temp dir),
runs ``redis-benchmark -t set,get -n N -q`` against each with ``-c 50``,
``-c 50 -P 16`` and ``-c 1``, and prints ops/s and the Amber/Redis ratio.

    python bench/redis_compare.py [-n 200000]

Both servers acknowledge a SET only after it is fsynced, so the SET rows
compare like with like.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = (
    ("-c 50", ["-c", "50"]),
    ("-c 50 -P 16", ["-c", "50", "-P", "16"]),
    ("-c 1", ["-c", "1"]),
)
GOALS = {("SET", "-c 50"): 0.8, ("GET", "-c 50"): 0.6, ("GET", "-c 50 -P 16"): 0.3}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--daemonize", "no", "--logfile", str(folder / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_port(port)
    return proc, port


def start_amber(folder: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "amber.cli", "serve", "--data", str(folder / "data"),
            "--port", "0", "--http-port", "-1", "--kvtext-port", "-1",
            "--durability", "always", "--log-level", "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    port = 0
    for line in proc.stdout:
        if line.startswith("listening resp"):
            port = int(line.rsplit(":", 1)[1])
        if line.strip() == "ready":
            break
    if not port:
        raise RuntimeError("amber serve did not start")
    return proc, port


def benchmark(port: int, requests: int, extra: list[str]) -> dict[str, float]:
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set,get", "-n", str(requests), "-q", *extra],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    ).stdout.replace("\r", "\n")
    found = dict(re.findall(r"^(SET|GET): ([\d.]+) requests per second", out, re.M))
    return {name: float(value) for name, value in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="requests per test")
    args = parser.parse_args()
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: apt-get install redis-server redis-tools)")
            return 1
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="amber-bench-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        (root / "amber").mkdir()
        redis_proc, redis_port = start_redis(root / "redis")
        amber_proc, amber_port = start_amber(root / "amber")
        try:
            for label, extra in CONFIGS:
                # Alternate the servers so a noisy neighbour hurts both alike.
                ours = benchmark(amber_port, args.n, extra)
                theirs = benchmark(redis_port, args.n, extra)
                for test in ("SET", "GET"):
                    rows.append((test, label, ours.get(test, 0.0), theirs.get(test, 0.0)))
                    print(f"  {test} {label}: amber {ours.get(test, 0):,.0f} ops/s, "
                          f"redis {theirs.get(test, 0):,.0f} ops/s", file=sys.stderr)  # fmt: skip
        finally:
            amber_proc.send_signal(signal.SIGTERM)
            redis_proc.send_signal(signal.SIGTERM)
            amber_proc.wait(60)
            redis_proc.wait(60)
    print(f"redis-benchmark -t set,get -n {args.n} -q; both servers fsync every write")
    print()
    print("| test | clients | Amber ops/s | Redis ops/s | Amber/Redis | goal |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for test, label, ours_ops, theirs_ops in rows:
        ratio = ours_ops / theirs_ops if theirs_ops else 0.0
        goal = GOALS.get((test, label))
        goal_text = f">= {goal:.1f}x" + (" ok" if ratio >= goal else " MISSED") if goal else ""
        cells = [test, label, f"{ours_ops:,.0f}", f"{theirs_ops:,.0f}", f"{ratio:.2f}x", goal_text]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
