"""HTTP GET/PATCH and KV text GET/PUT rates against ``amber serve`` (``make bench``).

Starts ``amber serve --durability always`` on a temp folder and drives it
with a small keep-alive load generator (raw sockets, asyncio; one request in
flight per connection, no pipelining), bounded by a request count *and* a
time limit per row. Prints requests/s and latency percentiles as a table.

    python bench/http_load.py [-n 20000] [--seconds 15]

Every write (PATCH, PUT) is acknowledged only once fsynced: concurrent
clients share fsyncs through group commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

KEYS = 1000


@dataclass
class Row:
    frontend: str
    test: str
    clients: int
    done: int
    errors: int
    seconds: float
    latencies: list[float]

    def cells(self) -> list[str]:
        ordered = sorted(self.latencies) or [0.0]

        def pct(p: float) -> str:
            return f"{ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000:.2f}"

        rate = self.done / self.seconds if self.seconds else 0.0
        return [
            self.frontend,
            self.test,
            str(self.clients),
            f"{self.done:,}",
            f"{rate:,.0f}",
            pct(0.5),
            pct(0.99),
            str(self.errors),
        ]


def start_amber(folder: Path) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "amber.cli", "serve", "--data", str(folder / "data"),
            "--port", "-1", "--http-port", "0", "--kvtext-port", "0",
            "--durability", "always", "--log-level", "warning",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        if line.startswith("listening "):
            _, frontend, address = line.split()
            ports[frontend] = int(address.rsplit(":", 1)[1])
        if line.strip() == "ready" or time.monotonic() > deadline:
            break
    if "http" not in ports or "kvtext" not in ports:
        proc.kill()
        raise RuntimeError("amber serve did not start")
    return proc, ports


# -- the load generator ------------------------------------------------------------------


async def _read_http_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _read_kvtext_reply(reader: asyncio.StreamReader, lines: int) -> int:
    last = b""
    for _ in range(lines):
        last = await reader.readline()
    return 200 if last.endswith(b"OK\r\n") or last == b"OK\r\n" else 500


async def _client(  # noqa: PLR0917 - one call site, all positional
    port: int,
    make: Callable[[int], bytes],
    read: Callable[[asyncio.StreamReader], object],
    quota: int,
    deadline: float,
    latencies: list[float],
    counts: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(quota):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            writer.write(make(n))
            status = await read(reader)  # type: ignore[misc]
            latencies.append(time.perf_counter() - started)
            counts[0 if 200 <= status < 300 else 1] += 1
    finally:
        writer.close()


def run_load(  # noqa: PLR0917
    port: int,
    clients: int,
    total: int,
    seconds: float,
    make: Callable[[int, int], bytes],
    read: Callable[[asyncio.StreamReader], object],
) -> tuple[int, int, float, list[float]]:
    """``total`` requests over ``clients`` connections, stopping at ``seconds`` anyway."""

    async def main() -> tuple[int, int, float, list[float]]:
        latencies: list[float] = []
        counts = [0, 0]
        deadline = time.monotonic() + seconds
        quota = max(1, total // clients)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(port, partial(make, c), read, quota, deadline, latencies, counts)
                for c in range(clients)
            )
        )
        return counts[0], counts[1], time.perf_counter() - started, latencies

    try:
        import uvloop

        return uvloop.run(main())
    except ImportError:
        return asyncio.run(main())


def http_get(c: int, n: int) -> bytes:
    key = (c * 7919 + n) % KEYS
    return f"GET /v1/tables/bench/keys/k{key} HTTP/1.1\r\nHost: b\r\n\r\n".encode()


def http_patch(c: int, n: int) -> bytes:
    body = json.dumps({"n": n, "client": c}).encode()
    return (
        f"PATCH /v1/tables/bench/keys/k{(c * 7919 + n) % KEYS} HTTP/1.1\r\nHost: b\r\n"
        f"Content-Type: application/merge-patch+json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def kv_get(c: int, n: int) -> bytes:
    return f"GET kvbench k{(c * 7919 + n) % KEYS}\r\n".encode()


def kv_put(c: int, n: int) -> bytes:
    return f"PUT kvbench k{(c * 7919 + n) % KEYS} {n}\r\n".encode()


async def _seed(ports: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ports["http"])
    for key in range(KEYS):
        body = json.dumps({"user": f"u{key}", "tags": ["x"], "n": key}).encode()
        writer.write(
            f"PUT /v1/tables/bench/keys/k{key} HTTP/1.1\r\nHost: b\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await _read_http_response(reader)
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", ports["kvtext"])
    writer.write(b"CREATE kvbench\r\n")
    await reader.readline()
    for key in range(KEYS):
        writer.write(f"PUT kvbench k{key} {key}\r\n".encode())
    for _ in range(KEYS):
        await reader.readline()
    writer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000, help="requests per row (at most)")
    parser.add_argument("--seconds", type=float, default=15.0, help="time limit per row")
    args = parser.parse_args()

    def read_get(reader: asyncio.StreamReader) -> object:
        return _read_kvtext_reply(reader, 2)

    def read_put(reader: asyncio.StreamReader) -> object:
        return _read_kvtext_reply(reader, 1)

    plan: list[tuple[str, str, str, Callable[[int, int], bytes], Callable[..., object]]] = [
        ("http", "GET key", "http", http_get, _read_http_response),
        ("http", "PATCH key (merge-patch)", "http", http_patch, _read_http_response),
        ("kvtext", "GET", "kvtext", kv_get, read_get),
        ("kvtext", "PUT", "kvtext", kv_put, read_put),
    ]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="amber-http-bench-") as tmp:
        proc, ports = start_amber(Path(tmp))
        try:
            asyncio.run(_seed(ports))
            for frontend, test, port_name, make, read in plan:
                for clients in (1, 50):
                    done, errors, seconds, latencies = run_load(
                        ports[port_name], clients, args.n, args.seconds, make, read
                    )
                    row = Row(frontend, test, clients, done, errors, seconds, latencies)
                    rows.append(row)
                    print("  " + " ".join(row.cells()), file=sys.stderr)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    print(
        f"amber serve --durability always; keep-alive connections, one request in flight each; "
        f"at most {args.n:,} requests or {args.seconds:g} s per row; {KEYS} keys"
    )
    print()
    print("| front end | test | clients | requests | req/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
