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


def test_api_docs_open_and_declare_the_bearer_scheme(server_factory: Any) -> None:
    """``/docs`` and ``/openapi.json`` hold no data: served without the password,
    they tell Swagger UI to ask for it (its Authorize button), and "Try it out"
    with it reaches the data routes, which stay closed without it."""
    server = server_factory("--requirepass", "s3cret")
    url = f"http://{server.host}:{server.ports['http']}"
    with httpx.Client(base_url=url, timeout=10) as http:
        page = http.get("/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        assert http.get("/docs/assets/swagger-ui.css").status_code == 200
        document = http.get("/openapi.json").json()
        scheme = document["components"]["securitySchemes"]["password"]
        assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
        assert document["security"] == [{"password": []}]
        assert document["paths"]["/health"]["get"]["security"] == []
        # Nothing else opened: a path that only starts like /docs is closed too.
        for closed in ("/metrics", "/v1/tables", "/docsx", "/openapi.jsonx"):
            assert http.get(closed).status_code == 401, closed
        put = http.put(
            "/v1/tables/t/keys/k", json={"a": 1}, headers={"Authorization": "Bearer s3cret"}
        )
        assert put.status_code in (200, 201)
    server.stop()
