"""TLS on RESP (``--tls-port``) and HTTP (``--http-tls-port``) against real servers.

A throwaway PKI is made per module with ``cryptography``: a CA, a server
certificate for 127.0.0.1 and localhost, a client certificate, and a second
CA ("rogue") with a client certificate of its own, to show that trust is
checked both ways. Two servers serve every test:

- ``optional``: plain and TLS ports side by side, client certificates
  verified if presented (``--tls-auth-clients optional``);
- ``mutual``: TLS only (``--port -1 --http-port -1``), client certificates
  required (Redis' default) and a password.
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.backoff import NoBackoff
from redis.retry import Retry
from server_support import ServerFactory, ServerProcess

from amber.errors import InvalidArgument
from amber.server.settings import load_settings

PASSWORD = "s3cret"


# -- a throwaway PKI ----------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass(frozen=True)
class Authority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    cert_file: Path


def _authority(folder: Path, name: str) -> Authority:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(key, cert, _write_cert(cert, folder / f"{name}.crt"))


def _leaf(ca: Authority, folder: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    """A certificate signed by ``ca`` and its key: (cert file, key file)."""
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(ca.key, hashes.SHA256())
    return _write_cert(cert, folder / f"{name}.crt"), _write_key(key, folder / f"{name}.key")


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_ca: Path
    rogue_client_cert: Path
    rogue_client_key: Path
    #: A key that belongs to no certificate here.
    stray_key: Path

    def server_flags(self, auth_clients: str | None = None) -> list[str]:
        flags = [
            "--tls-cert-file",
            str(self.server_cert),
            "--tls-key-file",
            str(self.server_key),
            "--tls-ca-cert-file",
            str(self.ca),
        ]
        return flags + ([] if auth_clients is None else ["--tls-auth-clients", auth_clients])

    def client_context(self, *, ca: Path | None = None, cert: bool = False) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(ca or self.ca))
        if cert:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = _authority(folder, "amber-test-ca")
    rogue = _authority(folder, "rogue-ca")
    server_cert, server_key = _leaf(ca, folder, "server", server=True)
    client_cert, client_key = _leaf(ca, folder, "client", server=False)
    rogue_cert, rogue_key = _leaf(rogue, folder, "rogue-client", server=False)
    return Pki(
        ca=ca.cert_file,
        server_cert=server_cert,
        server_key=server_key,
        client_cert=client_cert,
        client_key=client_key,
        rogue_ca=rogue.cert_file,
        rogue_client_cert=rogue_cert,
        rogue_client_key=rogue_key,
        stray_key=_write_key(_key(), folder / "stray.key"),
    )


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[dict[str, Any]]:
    """The two servers of the module doc, started once."""
    factory = ServerFactory(tmp_path_factory.mktemp("amber-tls"))
    try:
        optional = factory(
            "--tls-port",
            "0",
            "--http-tls-port",
            "0",
            *pki.server_flags("optional"),
            data=factory.root / "optional",
        )
        mutual = factory(
            "--tls-port",
            "0",
            "--http-tls-port",
            "0",
            "--requirepass",
            PASSWORD,
            *pki.server_flags(),
            data=factory.root / "mutual",
            ports=("--port", "-1", "--http-port", "-1", "--kvtext-port", "-1"),
        )
        yield {"optional": optional, "mutual": mutual}
        for server in factory.started:
            assert server.stop() == 0, server.stderr()
    finally:
        factory.cleanup()


def _tls_redis(server: ServerProcess, pki: Pki, **kwargs: Any) -> redis.Redis:
    kwargs.setdefault("ssl_ca_certs", str(pki.ca))
    # No retries: a refused handshake is the answer, not a glitch to back off from.
    kwargs.setdefault("retry", Retry(NoBackoff(), 0))
    return redis.Redis(
        host=server.host,
        port=server.ports["tls"],
        ssl=True,
        socket_timeout=10,
        socket_connect_timeout=10,
        **kwargs,
    )


def _assert_up(server: ServerProcess, pki: Pki) -> None:
    """The server still runs and answers a new TLS connection."""
    assert server.proc.poll() is None, server.stderr()
    flags: dict[str, Any] = {}
    if "resp" not in server.ports:  # the mutual server: cert and password
        flags = {
            "ssl_certfile": str(pki.client_cert),
            "ssl_keyfile": str(pki.client_key),
            "password": PASSWORD,
        }
    with _tls_redis(server, pki, **flags) as client:
        assert client.ping() is True


# -- RESP ---------------------------------------------------------------------


def test_redis_py_over_tls_alongside_plain(servers: dict[str, Any], pki: Pki) -> None:
    server = servers["optional"]
    with _tls_redis(server, pki) as client:
        assert client.set("tls:plain", "v") is True
        assert client.get("tls:plain") == b"v"
        assert client.json().set("tls:doc", "$", {"a": [1, 2], "b": "x"}) is True
        assert client.json().get("tls:doc") == {"a": [1, 2], "b": "x"}
        info = client.info("server")
        assert info["tls_port"] == server.ports["tls"]
        assert info["tcp_port"] == server.ports["resp"]
        assert client.config_get("tls-*") == {
            "tls-port": str(server.ports["tls"]),
            "tls-cert-file": str(pki.server_cert),
            "tls-key-file": str(pki.server_key),
            "tls-ca-cert-file": str(pki.ca),
            "tls-auth-clients": "optional",
        }
    # The same database on the plain port.
    with server.redis() as plain:
        assert plain.get("tls:plain") == b"v"


def test_optional_client_certificate_accepts_both(servers: dict[str, Any], pki: Pki) -> None:
    server = servers["optional"]
    with _tls_redis(
        server, pki, ssl_certfile=str(pki.client_cert), ssl_keyfile=str(pki.client_key)
    ) as with_cert:
        assert with_cert.set("tls:cert", "1") is True
    with _tls_redis(server, pki) as without_cert:
        assert without_cert.get("tls:cert") == b"1"
    # Presented certificates are verified: one from another CA is refused.
    rogue = _tls_redis(
        server,
        pki,
        ssl_certfile=str(pki.rogue_client_cert),
        ssl_keyfile=str(pki.rogue_client_key),
    )
    with pytest.raises(redis.ConnectionError):
        rogue.ping()
    rogue.close()
    _assert_up(server, pki)


def test_client_trusting_another_ca_is_refused(servers: dict[str, Any], pki: Pki) -> None:
    server = servers["optional"]
    client = _tls_redis(server, pki, ssl_ca_certs=str(pki.rogue_ca))
    with pytest.raises(
        redis.ConnectionError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"
    ):
        client.ping()
    client.close()
    url = f"https://{server.host}:{server.ports['https']}/health"
    with (
        httpx.Client(verify=pki.client_context(ca=pki.rogue_ca), timeout=10) as http,
        pytest.raises(httpx.ConnectError),
    ):
        http.get(url)
    _assert_up(server, pki)


def test_plaintext_on_the_tls_port_fails_cleanly(servers: dict[str, Any], pki: Pki) -> None:
    server = servers["optional"]
    with socket.create_connection((server.host, server.ports["tls"]), timeout=10) as sock:
        sock.sendall(b"*1\r\n$4\r\nPING\r\n")
        received = b""
        for _ in range(100):  # bounded: the server closes after the failed handshake
            try:
                chunk = sock.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        assert b"PONG" not in received
    plain = redis.Redis(
        host=server.host, port=server.ports["tls"], socket_timeout=10, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(redis.ConnectionError):
        plain.ping()
    plain.close()
    with pytest.raises(httpx.TransportError):  # plain HTTP on the HTTPS port
        httpx.get(f"http://{server.host}:{server.ports['https']}/health", timeout=10)
    _assert_up(server, pki)
    with httpx.Client(verify=pki.client_context(), timeout=10) as https:
        assert https.get(f"https://{server.host}:{server.ports['https']}/health").is_success
    assert "Traceback" not in server.stderr()


def test_client_certificate_required_and_password(servers: dict[str, Any], pki: Pki) -> None:
    server = servers["mutual"]
    assert "resp" not in server.ports and "http" not in server.ports  # TLS only
    without_cert = _tls_redis(server, pki, password=PASSWORD)
    with pytest.raises(redis.ConnectionError):
        without_cert.ping()
    without_cert.close()
    rogue = _tls_redis(
        server,
        pki,
        password=PASSWORD,
        ssl_certfile=str(pki.rogue_client_cert),
        ssl_keyfile=str(pki.rogue_client_key),
    )
    with pytest.raises(redis.ConnectionError):
        rogue.ping()
    rogue.close()
    # The certificate gets the connection; the password is still needed.
    context = pki.client_context(cert=True)
    with (
        socket.create_connection((server.host, server.ports["tls"]), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        lines = sock.makefile("rb")
        for command, reply in [
            (b"*3\r\n$3\r\nSET\r\n$5\r\ntls:k\r\n$1\r\nv\r\n", b"-NOAUTH"),
            (b"*2\r\n$4\r\nAUTH\r\n$5\r\nwrong\r\n", b"-WRONGPASS"),
            (b"*2\r\n$4\r\nAUTH\r\n$6\r\n" + PASSWORD.encode() + b"\r\n", b"+OK"),
            (b"*3\r\n$3\r\nSET\r\n$5\r\ntls:k\r\n$1\r\nv\r\n", b"+OK"),
        ]:
            sock.sendall(command)
            assert lines.readline().startswith(reply), command
        lines.close()
    cert = {"ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key)}
    with _tls_redis(server, pki, password=PASSWORD, **cert) as client:
        assert client.get("tls:k") == b"v"
        assert client.config_get("tls-auth-clients") == {"tls-auth-clients": "yes"}
    _assert_up(server, pki)


def _redis_cli() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        pytest.skip("redis-cli is not installed")
    usage = subprocess.run(
        [path, "--help"], check=False, capture_output=True, text=True, timeout=10
    )
    if "--tls" not in usage.stdout + usage.stderr:
        pytest.skip("this redis-cli was built without TLS (no --tls option)")
    return path


def test_redis_cli_over_tls(servers: dict[str, Any], pki: Pki) -> None:
    cli = _redis_cli()
    optional, mutual = servers["optional"], servers["mutual"]
    common = ["--tls", "--cacert", str(pki.ca), "-h", "127.0.0.1"]
    ping = subprocess.run(
        [cli, *common, "-p", str(optional.ports["tls"]), "PING"],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert ping.stdout.strip() == "PONG", ping.stderr
    with_cert = subprocess.run(
        [
            cli,
            *common,
            "--cert",
            str(pki.client_cert),
            "--key",
            str(pki.client_key),
            "-p",
            str(mutual.ports["tls"]),
            "--pass",
            PASSWORD,
            "--no-auth-warning",
            "PING",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert with_cert.stdout.strip() == "PONG", with_cert.stderr
    no_cert = subprocess.run(
        [cli, *common, "-p", str(mutual.ports["tls"]), "--pass", PASSWORD, "PING"],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert "PONG" not in no_cert.stdout


# -- HTTPS --------------------------------------------------------------------


def test_https_with_httpx(servers: dict[str, Any], pki: Pki) -> None:
    optional, mutual = servers["optional"], servers["mutual"]
    url = f"https://{optional.host}:{optional.ports['https']}"
    with httpx.Client(base_url=url, verify=pki.client_context(), timeout=10) as http:
        assert http.put("/v1/tables/web/keys/a", json={"n": 1}).status_code == 201
        got = http.get("/v1/tables/web/keys/a")
        assert got.status_code == 200 and got.json() == {"n": 1}
    # Plain HTTP still serves the same database on its own port.
    plain = httpx.get(f"http://{optional.host}:{optional.ports['http']}/v1/tables/web/keys/a")
    assert plain.json() == {"n": 1}

    url = f"https://{mutual.host}:{mutual.ports['https']}"
    bearer = {"Authorization": f"Bearer {PASSWORD}"}
    with (
        httpx.Client(base_url=url, verify=pki.client_context(), timeout=10) as no_cert,
        pytest.raises(httpx.TransportError),
    ):
        no_cert.get("/v1/tables/web/keys/a", headers=bearer)
    with httpx.Client(base_url=url, verify=pki.client_context(cert=True), timeout=10) as http:
        assert http.put("/v1/tables/web/keys/b", json=[1]).status_code == 401
        assert http.put("/v1/tables/web/keys/b", json=[1], headers=bearer).status_code == 201
        assert http.get("/v1/tables/web/keys/b", headers=bearer).json() == [1]
    _assert_up(mutual, pki)


def test_https_with_curl(servers: dict[str, Any], pki: Pki) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    server = servers["optional"]
    url = f"https://localhost:{server.ports['https']}/v1/tables/curl/keys/k"
    base = [curl, "--silent", "--show-error", "--max-time", "20", "--cacert", str(pki.ca)]
    put = subprocess.run(
        [*base, "-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"via": "curl"}', url],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert put.returncode == 0, put.stderr
    get = subprocess.run([*base, url], check=False, capture_output=True, text=True, timeout=30)
    assert get.returncode == 0 and get.stdout == '{"via":"curl"}', get.stdout + get.stderr
    untrusted = subprocess.run(
        [*base[:-1], str(pki.rogue_ca), url],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert untrusted.returncode == 60  # curl: peer certificate cannot be authenticated


# -- bad configuration --------------------------------------------------------


def test_bad_tls_configuration_refuses_to_start(tmp_path: Path, pki: Pki) -> None:
    """Each mistake: exit 1 with a message naming it, before the database is opened."""
    missing = tmp_path / "missing.crt"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    cases: list[tuple[list[str], str]] = [
        (["--tls-port", "0"], "need tls_cert_file and tls_key_file"),
        (
            [
                *("--tls-port", "0", "--tls-cert-file", str(missing)),
                *("--tls-key-file", str(pki.server_key), "--tls-auth-clients", "no"),
            ],
            f"tls_cert_file {missing}: No such file",
        ),
        (
            [
                *("--http-tls-port", "0", "--tls-cert-file", str(pki.server_cert)),
                *("--tls-key-file", str(pki.stray_key), "--tls-auth-clients", "no"),
            ],
            "is not the private key of tls_cert_file",
        ),
        (
            [
                *("--tls-port", "0", "--tls-cert-file", str(not_pem)),
                *("--tls-key-file", str(pki.server_key), "--tls-auth-clients", "no"),
            ],
            "not a PEM certificate and key",
        ),
        (
            [
                *("--tls-port", "0", "--tls-cert-file", str(pki.server_cert)),
                *("--tls-key-file", str(pki.server_key)),
            ],
            "needs tls_ca_cert_file",
        ),
        (
            ["--tls-port", "0", *pki.server_flags()[:4], "--tls-ca-cert-file", str(not_pem)],
            f"tls_ca_cert_file {not_pem}: not a PEM certificate",
        ),
        (["--tls-port", "0", *pki.server_flags("maybe")], "must be yes, no or optional"),
    ]
    procs: list[tuple[subprocess.Popen[str], Path]] = []
    try:
        for number, (flags, _) in enumerate(cases):
            data = tmp_path / f"data{number}"
            command = [sys.executable, "-m", "amber.cli", "serve", "--data", str(data)]
            command += ["--port", "0", "--http-port", "-1", "--kvtext-port", "-1", *flags]
            procs.append(
                (
                    subprocess.Popen(
                        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    ),
                    data,
                )
            )
        deadline = time.monotonic() + 60
        for (proc, data), (flags, expected) in zip(procs, cases, strict=True):
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            message = " ".join(err.split())  # rich wraps long lines
            assert proc.returncode == 1, (flags, out, err)
            assert expected in message, (flags, err)
            assert "ready" not in out
            assert not data.exists(), "the database was opened before the TLS check"
    finally:
        for proc, _ in procs:  # only the ones this test started
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


def test_tls_settings_from_file_and_environment(tmp_path: Path, pki: Pki) -> None:
    config = tmp_path / "amber.toml"
    config.write_text(
        f'tls-port = 7389\ntls_cert_file = "{pki.server_cert}"\n'
        f'tls_key_file = "{pki.server_key}"\ntls_ca_cert_file = "{pki.ca}"\n'
    )
    settings = load_settings(
        config_file=config,
        environ={"AMBER_TLS_AUTH_CLIENTS": "optional", "AMBER_HTTP_TLS_PORT": "7390"},
    )
    assert (settings.tls_port, settings.http_tls_port) == (7389, 7390)
    assert settings.tls_auth_clients == "optional"
    assert settings.redis_config()["tls-port"] == "7389"
    with pytest.raises(InvalidArgument, match="needs tls_ca_cert_file"):
        load_settings({"tls_ca_cert_file": ""}, config_file=config, environ={})
