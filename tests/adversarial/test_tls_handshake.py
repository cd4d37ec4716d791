"""A TLS client that never finishes its handshake is dropped in time, on both TLS ports.

Found auditing issue #12 (item 9's TLS ports): uvicorn gives a TLS handshake
asyncio's default of 60 s, so connections to the HTTPS port that sent
nothing (or half a ClientHello) stayed open a minute each, and none of them
counts toward ``maxclients`` (only a finished handshake reaches the
protocol). The HTTPS listener now has the RESP TLS port's bound,
``tls_handshake_timeout`` (10 s; 1 s here).
"""

from __future__ import annotations

import datetime
import ipaddress
import select
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest
from attack_support import PingWatch, SandboxedFactory, assert_responsive
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: Half a TLS record header: a handshake that starts and never goes on.
HALF_HELLO = b"\x16\x03\x01\x02"


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amber-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "server.crt", folder / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def open_after(sockets: list[socket.socket], seconds: float) -> int:
    """How many of ``sockets`` the server has not closed within ``seconds``."""
    alive = list(sockets)
    deadline = time.monotonic() + seconds
    while alive and time.monotonic() < deadline:
        ready, _, _ = select.select(alive, [], [], 0.2)
        for sock in ready:
            try:
                if sock.recv(4096):
                    continue
            except OSError:
                pass
            alive.remove(sock)
    return len(alive)


@pytest.mark.parametrize("port", ["tls", "https"])
def test_an_unfinished_handshake_is_dropped(
    server_factory: SandboxedFactory, sandbox: Path, port: str
) -> None:
    cert, key = self_signed(sandbox / "home")
    server = server_factory(
        "--tls-port", "0", "--http-tls-port", "0", "--tls-cert-file", str(cert),
        "--tls-key-file", str(key), "--tls-auth-clients", "no",
        env={"AMBER_TLS_HANDSHAKE_TIMEOUT": "1"},
    )  # fmt: skip
    address = (server.host, server.ports[port])
    attackers = []
    try:
        with PingWatch(server) as watch:
            for i in range(60):
                sock = socket.create_connection(address, timeout=5)
                if i % 2:
                    sock.sendall(HALF_HELLO)
                attackers.append(sock)
            left = open_after(attackers, 4.0)
            # Meanwhile and after, a real TLS client is served.
            context = ssl.create_default_context(cafile=str(cert))
            if port == "https":
                base = f"https://{server.host}:{server.ports['https']}"
                with httpx.Client(base_url=base, verify=context, timeout=10) as http:
                    assert http.get("/health").status_code == 200
            else:
                with (
                    socket.create_connection(address, timeout=5) as raw,
                    context.wrap_socket(raw, server_hostname=server.host) as tls,
                ):
                    tls.sendall(b"*1\r\n$4\r\nPING\r\n")
                    assert tls.recv(64) == b"+PONG\r\n"
        watch.assert_ok()
        assert left == 0, f"{left} of {len(attackers)} unfinished handshakes still open after 4 s"
    finally:
        for sock in attackers:
            sock.close()
    assert_responsive(server)
