"""A RESP watch replaying a large history does not freeze the server.

Found auditing issue #12 (item 2 fixed this for SSE only): ``SUBSCRIBE
__amber_watch__@1:*`` and ``AMBER.WATCH * FROM 1`` encoded each replayed
revision whole, without a turn of the event loop: a transaction over many
wide documents held every front end for seconds (3.8 s here, measured by a
PING from another connection). A pump now yields whenever it has run
``YIELD_AFTER_S``, also inside one revision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from attack_support import PingWatch, SandboxedFactory, ServerProcess, assert_responsive

MIB = 1024 * 1024
FIELDS = 20_000
TX_KEYS = 24


def wide_document(i: int) -> str:
    """~1 MB of JSON in 20k small fields: costly to encode, as real documents are."""
    return json.dumps({f"f{j}": {"v": i, "s": "x" * 20, "l": [j, i]} for j in range(FIELDS)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    factory = SandboxedFactory(tmp_path_factory.mktemp("replay"))
    server = factory(
        "--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"),
        env={"AMBER_HISTORY_BYTES": str(1024 * MIB)},
    )  # fmt: skip
    client = server.redis(socket_timeout=60)
    with client.pipeline(transaction=True) as tx:  # one revision of many wide documents
        for i in range(TX_KEYS):
            tx.execute_command("JSON.SET", f"big:t{i}", "$", wide_document(i))
        tx.execute()
    client.close()
    try:
        yield server
    finally:
        factory.cleanup()


def test_a_watch_channel_replay(server: ServerProcess) -> None:
    client = server.redis(socket_timeout=60)
    pubsub = client.pubsub()
    seen = 0
    with PingWatch(server) as watch:
        pubsub.subscribe("__amber_watch__@1:*")
        deadline = time.monotonic() + 30
        while seen < TX_KEYS and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=5)
            if message is not None and message["type"] == "message":
                seen += 1
    watch.assert_ok()
    assert seen == TX_KEYS
    pubsub.close()
    assert_responsive(server)


def test_an_amber_watch_replay(server: ServerProcess) -> None:
    client = server.redis(socket_timeout=60)
    pubsub = client.pubsub()
    seen = 0
    with PingWatch(server) as watch:
        pubsub.execute_command("AMBER.WATCH", "*", "FROM", "1")
        deadline = time.monotonic() + 30
        while seen < TX_KEYS and time.monotonic() < deadline:
            reply = pubsub.parse_response(block=False, timeout=5)
            if reply is not None and reply[0] == b"amber.watch":
                seen += 1
    watch.assert_ok()
    assert seen == TX_KEYS
    pubsub.close()
    assert_responsive(server)
