"""Amber vs Redis, side by side, with redis-benchmark (``make bench``).

Starts Debian's ``redis-server`` (AOF on, ``appendfsync always``, loopback,
its own temp dir) and ``amber serve --durability always`` (its own temp dir),
runs ``redis-benchmark -t set,get,incr,mset`` (``-n N -q``; ``--tests``)
against each with ``-c 50``, ``-c 50 -P 16`` and ``-c 1`` (``--configs``),
and prints ops/s, the
Amber/Redis ratio and each server's CPU per request (user + system µs, from
``/proc``): on a machine the client shares, the ratio follows the CPU.

    python bench/redis_compare.py [-n 200000] [-t incr,mset] [-c "-c 50"]

Both servers acknowledge a write only after it is fsynced, so the write rows
compare like with like. INCR hits one key from every client (redis-benchmark
without ``-r``): the hot-key read-modify-write case.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CONFIGS = (
    ("-c 50", ["-c", "50"]),
    ("-c 50 -P 16", ["-c", "50", "-P", "16"]),
    ("-c 1", ["-c", "1"]),
)
GOALS = {
    ("SET", "-c 50"): 0.6,
    ("GET", "-c 50"): 0.6,
    ("GET", "-c 50 -P 16"): 0.3,
    ("INCR", "-c 50"): 0.5,
    ("MSET", "-c 50"): 0.5,
}


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


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process so far (Linux ``/proc``; else zeros)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def benchmark(port: int, pid: int, test: str, requests: int, extra: list[str]) -> Run:
    """One redis-benchmark test; its rate and the server's CPU per request."""
    user, system = cpu_seconds(pid)
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", test, "-n", str(requests), "-q", *extra],
        capture_output=True,
        text=True,
        timeout=3600,
        check=True,
    ).stdout.replace("\r", "\n")
    user_after, system_after = cpu_seconds(pid)
    found = re.findall(r"^[A-Z_]+(?: \([^)]*\))?: ([\d.]+) requests per second", out, re.M)
    return Run(
        float(found[-1]) if found else 0.0,
        (user_after - user) / requests * 1e6,
        (system_after - system) / requests * 1e6,
    )


@dataclass(frozen=True)
class Run:
    ops: float
    #: The server's CPU per request, µs.
    user_us: float
    system_us: float

    def cpu(self) -> str:
        return f"{self.user_us:.1f} + {self.system_us:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=200_000, help="requests per test")
    parser.add_argument(
        "-t",
        "--tests",
        default="set,get,incr,mset",
        help="redis-benchmark tests, comma-separated (GET reads the key SET wrote)",
    )
    parser.add_argument(
        "-c",
        "--configs",
        default=",".join(label for label, _ in CONFIGS),
        help="client configurations among: " + ", ".join(label for label, _ in CONFIGS),
    )
    args = parser.parse_args()
    tests = [t.strip().upper() for t in args.tests.split(",") if t.strip()]
    configs = [(label, extra) for label, extra in CONFIGS if label in args.configs.split(",")]
    for tool in ("redis-server", "redis-benchmark"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed (Debian: apt-get install redis-server redis-tools)")
            return 1
    rows: list[tuple[str, str, Run, Run]] = []
    with tempfile.TemporaryDirectory(prefix="amber-bench-") as tmp:
        root = Path(tmp)
        (root / "redis").mkdir()
        (root / "amber").mkdir()
        redis_proc, redis_port = start_redis(root / "redis")
        amber_proc, amber_port = start_amber(root / "amber")
        try:
            for label, extra in configs:
                for test in tests:
                    # Alternate the servers so a noisy neighbour hurts both alike.
                    ours = benchmark(amber_port, amber_proc.pid, test, args.n, extra)
                    theirs = benchmark(redis_port, redis_proc.pid, test, args.n, extra)
                    rows.append((test, label, ours, theirs))
                    print(f"  {test} {label}: amber {ours.ops:,.0f} ops/s, "
                          f"redis {theirs.ops:,.0f} ops/s", file=sys.stderr)  # fmt: skip
        finally:
            amber_proc.send_signal(signal.SIGTERM)
            redis_proc.send_signal(signal.SIGTERM)
            amber_proc.wait(60)
            redis_proc.wait(60)
    print(f"redis-benchmark -t {args.tests} -n {args.n} -q; both servers fsync every write")
    print("server CPU per request: user + system µs")
    print()
    print("| test | clients | Amber ops/s | Redis ops/s | Amber/Redis | goal "
          "| Amber CPU µs | Redis CPU µs |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for test, label, ours, theirs in rows:
        ratio = ours.ops / theirs.ops if theirs.ops else 0.0
        goal = GOALS.get((test, label))
        goal_text = f">= {goal:.1f}x" + (" ok" if ratio >= goal else " MISSED") if goal else ""
        cells = [test, label, f"{ours.ops:,.0f}", f"{theirs.ops:,.0f}", f"{ratio:.2f}x",
                 goal_text, ours.cpu(), theirs.cpu()]  # fmt: skip
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
