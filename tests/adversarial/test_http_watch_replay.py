"""Dropped SSE watches that replay a large history do not freeze the server.

Issue #12, item 2: ``GET /v1/watch?from=<oldest>`` over a history of large
documents, then the client disconnects: the server went on encoding the
whole replay for nobody without yielding, and every front end stopped
answering (3.7 s for one dropped stream). A replay now hands the loop a turn
every 256 KiB, also inside one large revision, and ends when its client is
gone.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
from attack_support import PingWatch, SandboxedFactory, assert_responsive, rss_bytes

MIB = 1024 * 1024
N = 20
FIELDS = 20_000
TX_KEYS = 10


def wide_document(i: int) -> str:
    """~1 MB of JSON in 20k small fields: costly to diff and encode, as real documents are.

    (One long string encodes in a blink and never showed the stall.)
    """
    return json.dumps({f"f{j}": {"v": i, "s": "x" * 20, "l": [j, i]} for j in range(FIELDS)})


def test_dropped_replays_of_a_large_history(server_factory: SandboxedFactory) -> None:
    # A history that holds the whole replay (~12 MB of objects per wide revision):
    # with the default 64 MiB, ``from=1`` would answer 410 and replay nothing.
    server = server_factory(env={"AMBER_HISTORY_BYTES": str(2 * 1024 * MIB)})
    client = server.redis()
    for i in range(N):  # every revision a new wide document over the last but one
        client.execute_command("JSON.SET", f"big:k{i % 2}", "$", wide_document(i))
    # ... and one revision that is itself large: a transaction over many keys.
    with client.pipeline(transaction=True) as tx:
        for i in range(TX_KEYS):
            tx.execute_command("JSON.SET", f"big:t{i}", "$", wide_document(i))
        tx.execute()
    last = N + 1
    before = rss_bytes(server.proc.pid)
    request = b"GET /v1/watch?from=1 HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    with PingWatch(server) as watch:
        for _ in range(10):
            sock = socket.create_connection((server.host, server.ports["http"]))
            sock.sendall(request)
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")  # the replay has started
            sock.close()
        time.sleep(2)
    watch.assert_ok()
    assert rss_bytes(server.proc.pid) - before < 200 * MIB
    # A client that stays reads the whole replay while others are served.
    base = f"http://{server.host}:{server.ports['http']}"
    seen = 0
    with (
        PingWatch(server) as watch,
        httpx.Client(base_url=base, timeout=30) as http,
        http.stream("GET", "/v1/watch", params={"from": 1}) as stream,
    ):
        for line in stream.iter_lines():
            if line.startswith("id: "):
                seen = int(line[4:])
                if seen >= last:
                    break
    watch.assert_ok()
    assert seen == last
    assert_responsive(server)
