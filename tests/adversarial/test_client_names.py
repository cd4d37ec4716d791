"""Client names are checked without stalling the server and cannot forge CLIENT LIST lines.

Found auditing issue #12: ``CLIENT SETNAME`` checked a name one character at
a time in Python, so a 32 MiB name (within the request limit) held every
other client ~3 s; and ``CLIENT SETINFO LIB-NAME`` took any bytes, so a
newline in it started a made-up client line in ``CLIENT LIST``. Redis 7.2
refuses both the same way (``!``-``~`` only).
"""

from __future__ import annotations

import pytest
import redis
from attack_support import PingWatch, SandboxedFactory, assert_responsive

MIB = 1024 * 1024


def test_a_huge_client_name_does_not_stall_the_server(server_factory: SandboxedFactory) -> None:
    server = server_factory("--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"))
    client = server.redis(socket_timeout=30)
    with PingWatch(server) as watch:
        for _ in range(2):
            assert client.client_setname("n" * (32 * MIB)) is True
            with pytest.raises(redis.ResponseError, match="cannot contain spaces"):
                client.client_setname("n" * (32 * MIB) + " ")
    watch.assert_ok()
    assert client.client_getname() == "n" * (32 * MIB)
    client.close()
    assert_responsive(server)


@pytest.mark.parametrize("attr", ["LIB-NAME", "LIB-VER"])
def test_setinfo_cannot_forge_client_list_lines(
    server_factory: SandboxedFactory, attr: str
) -> None:
    server = server_factory("--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"))
    client = server.redis()
    for bad in ("x\nid=999 addr=10.0.0.1:1 name=admin", "a b", "caf\u00e9"):
        with pytest.raises(redis.ResponseError, match="cannot contain spaces, newlines"):
            client.execute_command("CLIENT", "SETINFO", attr, bad)
    assert client.execute_command("CLIENT", "SETINFO", attr, "redis-py_5.0") == b"OK"
    listing = client.execute_command("CLIENT", "LIST")
    text = listing.decode() if isinstance(listing, bytes) else str(listing)
    assert "id=999" not in text and "redis-py_5.0" in text
    client.close()
