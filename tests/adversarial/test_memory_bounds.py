"""Writes that replace or remove what they write leave the server's memory flat.

Issue #12, item 12: memory grew 55 -> 250 MB over a redis-py test run and
~8 MB per 20k SETs to one key. The watch history kept it: its byte bound
counted packed values (a third to a twentieth of the objects it held), and
trimmed revisions stayed referenced until 4096 of them piled up — with the
coalescer's 512-change revisions, millions of changes. These tests run a real
server with a small history (``AMBER_HISTORY_BYTES``), fill it in a warm-up,
then check that the resident set (``/proc/PID/status`` VmRSS) stays within a
few MB while the same pattern goes on. ``make soak-memory`` runs 1M
overwrites with the default bounds (``tests/adversarial/soak_memory.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from attack_support import SandboxedFactory, ServerProcess, assert_responsive, rss_bytes

MIB = 1024 * 1024
#: The history bound the servers here run with: the warm-ups fill it.
HISTORY_BYTES = 2 * MIB
#: How far RSS may move after the warm-up: allocator arenas, not a trend.
FLAT = 4 * MIB
#: No pattern here may run longer than this (seconds).
BUDGET_S = 45.0


def _server(factory: SandboxedFactory, history_bytes: int = HISTORY_BYTES) -> ServerProcess:
    return factory(env={"AMBER_HISTORY_BYTES": str(history_bytes)})


def _rss_after(
    server: ServerProcess, step: Callable[[int], None], warm_up: int, steps: int
) -> tuple[int, int, list[int]]:
    """RSS once ``warm_up`` steps ran, the highest after each of ``steps`` more, and all samples."""
    deadline = time.monotonic() + BUDGET_S
    for n in range(warm_up):
        step(n)
    warm = rss_bytes(server.proc.pid)
    samples = [warm]
    for n in range(warm_up, warm_up + steps):
        step(n)
        samples.append(rss_bytes(server.proc.pid))
        assert time.monotonic() < deadline, f"too slow: {n} steps in {BUDGET_S} s"
    return warm, max(samples), samples


def _table(samples: list[int]) -> str:
    return " ".join(f"{s / MIB:.1f}" for s in samples)


def test_overwrites_of_one_key_keep_rss_flat(server_factory: SandboxedFactory) -> None:
    server = _server(server_factory)
    client = server.redis()
    start = rss_bytes(server.proc.pid)

    def step(n: int) -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(n * 2000, (n + 1) * 2000):
            pipe.set("foo", f"value-{i}")
        pipe.execute()

    # 40k overwrites fill the 2 MiB history (with room to spare); then 120k more.
    warm, peak, samples = _rss_after(server, step, warm_up=20, steps=60)
    assert client.get("foo") == b"value-159999"
    assert peak - warm < FLAT, f"RSS grew {(peak - warm) / MIB:.1f} MiB: {_table(samples)}"
    # The bound counts what the window holds, not its packed size (3x less).
    filled = warm - start
    assert filled < 2 * HISTORY_BYTES + FLAT, f"history took {filled / MIB:.1f} MiB"
    assert_responsive(server)


def test_distinct_keys_written_and_deleted_keep_rss_flat(
    server_factory: SandboxedFactory,
) -> None:
    server = _server(server_factory)
    client = server.redis()

    def step(n: int) -> None:
        pipe = client.pipeline(transaction=False)
        for i in range(n * 1000, (n + 1) * 1000):
            pipe.set(f"key:{i}", "v" * 20)
            pipe.delete(f"key:{i}")
        pipe.execute()

    warm, peak, samples = _rss_after(server, step, warm_up=20, steps=60)
    assert client.dbsize() == 0
    assert peak - warm < FLAT, f"RSS grew {(peak - warm) / MIB:.1f} MiB: {_table(samples)}"


def test_distinct_tables_and_reads_of_made_up_ones_keep_rss_flat(
    server_factory: SandboxedFactory,
) -> None:
    """Each ``prefix:`` is a table: its state went only when dropped with keys in it.

    A GET of a key in a table that never existed kept a handle and a state
    for good, and FLUSHALL (a drop of every table) skipped empty tables.
    """
    server = _server(server_factory)
    client = server.redis()

    def step(n: int) -> None:
        pipe = client.pipeline(transaction=False)
        # Reads first: a read behind a write waits for its commit (an fsync each).
        for i in range(n * 200, (n + 1) * 200):
            pipe.get(f"never{i}:k")
        for i in range(n * 200, (n + 1) * 200):
            pipe.set(f"t{i}:k", "v")
            pipe.delete(f"t{i}:k")
        pipe.flushall()
        pipe.execute()

    warm, peak, samples = _rss_after(server, step, warm_up=20, steps=30)
    assert client.dbsize() == 0
    assert peak - warm < FLAT, f"RSS grew {(peak - warm) / MIB:.1f} MiB: {_table(samples)}"


def test_many_short_connections_keep_rss_flat(server_factory: SandboxedFactory) -> None:
    """What a redis-py test run does: a connection per test, CLIENT, FLUSHALL, a few keys."""
    # A connection's two revisions are ~800 bytes of history: a small one fills
    # during the warm-up (filling a big one with pipelines first would swap big
    # revisions for small ones during the test, which moves RSS by itself).
    server = _server(server_factory, history_bytes=128 * 1024)

    def step(n: int) -> None:
        for i in range(n * 25, (n + 1) * 25):
            client = redis.Redis(host=server.host, port=server.port, socket_timeout=10)
            try:
                client.client_setname(f"test-{i}")
                client.flushall()
                client.set(f"t{i % 50}:k{i}", "v")
                client.get(f"t{i % 50}:k{i}")
                client.client_list()
                client.delete(f"t{i % 50}:k{i}")
            finally:
                client.close()

    warm, peak, samples = _rss_after(server, step, warm_up=25, steps=30)
    assert peak - warm < FLAT, f"RSS grew {(peak - warm) / MIB:.1f} MiB: {_table(samples)}"
