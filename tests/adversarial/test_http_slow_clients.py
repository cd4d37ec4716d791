"""HTTP connections that send half a request are closed in time (slowloris).

Issue #12, item 5: a connection holding half-sent headers stayed open
forever. Each request now has ``http_header_timeout`` from its first byte to
the end of its headers, and at most ``http_body_timeout`` of silence while its
body arrives; then ``408`` and the connection closes.
"""

from __future__ import annotations

import socket
import time

import httpx
from attack_support import PingWatch, SandboxedFactory, assert_responsive

TIMEOUTS = {"AMBER_HTTP_HEADER_TIMEOUT": "1.0", "AMBER_HTTP_BODY_TIMEOUT": "1.0"}


def _closed_after(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed ``sock`` (reading what it sent), at most ``limit``."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return time.monotonic() - started, received
        received += chunk


def test_half_sent_headers_are_cut_off(server_factory: SandboxedFactory) -> None:
    server = server_factory(env=TIMEOUTS)
    address = (server.host, server.ports["http"])
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /v1/tables HTTP/1.1\r\nHost: x\r\n")
        took, reply = _closed_after(sock, 10)
    assert took < 4 and reply.startswith(b"HTTP/1.1 408")
    # Trickling a header byte at a time does not extend the deadline.
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /v1/tables HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        try:
            for _ in range(40):
                sock.sendall(b"a")
                time.sleep(0.2)
        except OSError:
            pass  # closed under us: the point
        assert time.monotonic() - started < 6
    # A stalled body is cut off too.
    with socket.create_connection(address) as sock:
        sock.sendall(
            b"PUT /v1/tables/t/keys/k HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
            b'content-length: 100\r\n\r\n{"a":'
        )
        took, reply = _closed_after(sock, 10)
    assert took < 4
    base = f"http://{server.host}:{server.ports['http']}"
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.get("/v1/tables/t/keys/k").status_code == 404  # nothing half-written
        assert http.put("/v1/tables/t/keys/k", json={"a": 1}).status_code in (200, 201)


def test_many_slow_connections_do_not_stop_the_server(server_factory: SandboxedFactory) -> None:
    server = server_factory(env=TIMEOUTS)
    address = (server.host, server.ports["http"])
    base = f"http://{server.host}:{server.ports['http']}"
    sockets = []
    try:
        with PingWatch(server) as watch, httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(200):
                sock = socket.create_connection(address)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
                sockets.append(sock)
            assert http.get("/health").status_code == 200
            time.sleep(2.5)
            for sock in sockets:  # every one of them was closed by the server
                took, _ = _closed_after(sock, 5)
                assert took < 5
        watch.assert_ok()
    finally:
        for sock in sockets:
            sock.close()
    assert_responsive(server)
