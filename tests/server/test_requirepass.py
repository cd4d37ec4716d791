"""``--requirepass`` guards every front end: RESP (AUTH), HTTP (Bearer), KV text (refused)."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
import redis


def test_password_guards_every_frontend(server_factory: Any) -> None:
    server = server_factory("--requirepass", "s3cret")
    with pytest.raises(redis.AuthenticationError):
        server.redis().set("t:k", "v")
    authed = server.redis(password="s3cret")
    assert authed.set("t:k", "v") is True

    url = f"http://{server.host}:{server.ports['http']}"
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/v1/tables/t/keys/k").status_code == 401
        assert http.put("/v1/tables/t/keys/x", json={"a": 1}).status_code == 401
        assert http.get("/health").status_code == 200  # for probes
        ok = http.get("/v1/tables/t/keys/k", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json() == "v"

    with socket.create_connection((server.host, server.ports["kvtext"]), timeout=10) as sock:
        sock.sendall(b"GET t k\r\n")
        reply = sock.recv(4096)
        assert reply.startswith(b"ERROR") and b"password" in reply
        assert sock.recv(4096) == b""  # closed
    assert authed.get("t:k") == b"v"  # nothing changed, the server is up
    authed.close()
    server.stop()
