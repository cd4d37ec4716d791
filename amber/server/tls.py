"""TLS for the RESP and HTTP front ends, configured as Redis 6 configures it.

One server-side :class:`ssl.SSLContext` serves every TLS listener
(``tls_port`` for RESP, ``http_tls_port`` for HTTPS). It is built, and so
every certificate and key file is read and checked, before the database is
opened: a typo in a path fails the start at once, not after a long recovery.

``tls_auth_clients`` follows Redis' ``tls-auth-clients``:

- ``yes`` (the default, as in Redis): a client must present a certificate
  signed by ``tls_ca_cert_file``, which is then required;
- ``optional``: a certificate is verified if the client presents one;
- ``no``: none is asked for (the CA file, if given, is unused).

TLS 1.2 is the oldest version accepted; ciphers are Python's defaults
(OpenSSL's secure level 2: no RC4, no 3DES, no export suites).
"""

from __future__ import annotations

import ssl
from typing import Protocol

from ..errors import InvalidArgument

__all__ = [
    "AUTH_CLIENTS",
    "TlsSettings",
    "check_settings",
    "server_context",
]

#: Values of ``tls_auth_clients`` and the verify mode each stands for.
AUTH_CLIENTS: dict[str, ssl.VerifyMode] = {
    "yes": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "no": ssl.CERT_NONE,
}


class TlsSettings(Protocol):
    """The fields of ``ServeSettings`` that TLS reads."""

    @property
    def tls_port(self) -> int: ...
    @property
    def http_tls_port(self) -> int: ...
    @property
    def tls_cert_file(self) -> str: ...
    @property
    def tls_key_file(self) -> str: ...
    @property
    def tls_ca_cert_file(self) -> str: ...
    @property
    def tls_auth_clients(self) -> str: ...


def check_settings(settings: TlsSettings) -> None:
    """Refuse combinations that cannot work (no file is read here)."""
    if settings.tls_auth_clients not in AUTH_CLIENTS:
        raise InvalidArgument(
            f"tls_auth_clients must be yes, no or optional, not {settings.tls_auth_clients!r}"
        )
    if settings.tls_port < 0 and settings.http_tls_port < 0:
        return
    if not settings.tls_cert_file or not settings.tls_key_file:
        raise InvalidArgument(
            "tls_port and http_tls_port need tls_cert_file and tls_key_file "
            "(the server's certificate and its private key, PEM)"
        )
    if settings.tls_auth_clients != "no" and not settings.tls_ca_cert_file:
        raise InvalidArgument(
            f"tls_auth_clients {settings.tls_auth_clients} (the default is yes, as in Redis) "
            "needs tls_ca_cert_file, the CA that signs client certificates; "
            "set tls_auth_clients no to accept clients without one"
        )


def _readable(kind: str, path: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise InvalidArgument(f"{kind} {path}: {exc.strerror or exc}") from None


def server_context(settings: TlsSettings) -> ssl.SSLContext | None:
    """The TLS listeners' context, or None when no TLS port is on.

    Raises :class:`InvalidArgument` naming the file at fault: missing or
    unreadable, not PEM, or a key that does not belong to the certificate.
    """
    check_settings(settings)
    if settings.tls_port < 0 and settings.http_tls_port < 0:
        return None
    cert, key, ca = settings.tls_cert_file, settings.tls_key_file, settings.tls_ca_cert_file
    _readable("tls_cert_file", cert)
    _readable("tls_key_file", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
            raise InvalidArgument(
                f"tls_key_file {key} is not the private key of tls_cert_file {cert}"
            ) from None
        raise InvalidArgument(
            f"tls_cert_file {cert} / tls_key_file {key}: not a PEM certificate and key "
            f"({exc.reason or exc})"
        ) from None
    if settings.tls_auth_clients != "no":
        _readable("tls_ca_cert_file", ca)
        try:
            context.load_verify_locations(cafile=ca)
        except ssl.SSLError as exc:
            raise InvalidArgument(
                f"tls_ca_cert_file {ca}: not a PEM certificate ({exc.reason or exc})"
            ) from None
        if not context.get_ca_certs():
            raise InvalidArgument(f"tls_ca_cert_file {ca} holds no CA certificate")
    context.verify_mode = AUTH_CLIENTS[settings.tls_auth_clients]
    return context
