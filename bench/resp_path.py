"""The RESP server's own cost per command, without sockets (a profiling aid).

Drives real ``RespConnection`` objects of a real server state over a real
database, but through an in-memory transport: each round, every one of
``--clients`` connections receives one request and the round ends when all
of them have their reply. What is left is Amber's Python work per command
(parse, run, group commit, apply, reply encode) plus the fsyncs of the
chosen durability — the part the loopback benchmark cannot separate from
the kernel's socket work and the client's CPU on a shared machine.

    python bench/resp_path.py [--clients 50] [--rounds 2000] [--durability never]
        [--commands SET,GET] [--pipeline 1]

Prints CPU µs per command (process time, so other load matters little) and
commands per second of wall time, for SET and GET.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
from typing import Any

from amber import database
from amber.config import Config
from amber.server.commands import RuntimeConfig, ServerState
from amber.server.context import ServerContext
from amber.server.resp import RespServer
from amber.server.resp.connection import RespConnection
from amber.server.server import GC_YOUNG_THRESHOLD


class _Transport:
    """Enough of an asyncio transport for ``RespConnection``: counts replies."""

    def __init__(self, on_reply: Any) -> None:
        self.on_reply = on_reply

    def write(self, data: bytes) -> None:
        self.on_reply(data.count(b"\r\n"))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _frame(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


async def _run(
    command: bytes, clients: int, rounds: int, depth: int, state: ServerState
) -> tuple[float, float]:
    server = RespServer(state)
    done = asyncio.Event()
    owed = 0

    def on_reply(lines: int) -> None:
        nonlocal owed
        owed -= lines
        if owed <= 0:
            done.set()

    connections = []
    for _ in range(clients):
        connection = RespConnection(server)
        connection.connection_made(_Transport(on_reply))
        connections.append(connection)
    frames = [(_frame(command, b"key:%d" % i, b"xxx") if command == b"SET" else
               _frame(command, b"key:%d" % i)) * depth for i in range(clients)]  # fmt: skip
    # GET replies are two lines ($3, xxx), SET replies one (+OK).
    per_reply = 2 if command == b"GET" else 1
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        done.clear()
        owed = clients * per_reply * depth
        for connection, frame in zip(connections, frames, strict=True):
            connection.data_received(frame)
        await done.wait()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for connection in connections:
        connection.connection_lost(None)
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--durability", default="never", choices=["always", "interval", "never"])
    parser.add_argument("--commands", default="SET,GET", help="comma-separated: SET, GET")
    parser.add_argument("--pipeline", type=int, default=1, help="requests per client per round")
    options = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as folder:
        db = database.open(folder, config=Config(durability=options.durability))
        try:
            state = ServerState(ServerContext.for_database(db), RuntimeConfig({}))
            gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)  # as ``amber serve`` runs
            gc.collect()
            gc.freeze()
            print(
                f"{options.clients} clients x {options.rounds} rounds x {options.pipeline} "
                f"requests, durability {options.durability}"
            )
            print("| command | CPU µs/command | commands/s (wall) |")
            print("| --- | ---: | ---: |")
            for command in options.commands.upper().encode().split(b","):
                n = options.clients * options.rounds * options.pipeline
                warm = _run(command, options.clients, options.rounds // 10, options.pipeline, state)
                asyncio.run(warm)
                run = _run(command, options.clients, options.rounds, options.pipeline, state)
                cpu, wall = asyncio.run(run)
                print(f"| {command.decode()} | {cpu / n * 1e6:.1f} | {n / wall:,.0f} |")
        finally:
            db.close()


if __name__ == "__main__":
    main()
