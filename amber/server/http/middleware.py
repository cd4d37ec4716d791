"""The ASGI layer around every route: password, body limit, request metrics.

Plain ASGI (not Starlette's ``BaseHTTPMiddleware``), so an event stream
passes through untouched and a client's disconnect still reaches it.

- **Password**: when the server has one (``requirepass``), every route but
  ``/health``, the console's static files (``/ui``) and the API description
  (``/docs``, ``/openapi.json``) — which hold no data and ask for the password
  themselves — needs ``Authorization: Bearer <password>``
  (or Basic with any user name and the password) — else ``401`` with
  ``WWW-Authenticate``.
- **Body limit**: a body over the database's batch limit is ``413`` — by its
  ``Content-Length`` before anything is read, or as soon as it streams past.
- **UTF-8**: table names and keys travel percent-encoded in the path (and
  in the query of scans and watches); uvicorn and Starlette decode them with
  ``errors="replace"``, so ``%fe%ff`` and ``%ff%fe`` would both name the key of two
  U+FFFD. The raw bytes are decoded strictly here first: invalid
  UTF-8 is ``400`` (as RESP refuses the same bytes), on every route.
- **Shards**: on a node whose group owns only some slots, a single-key
  route is served here or redirected (``HttpApi.route``: 307 to the key's
  group, 503 while its slot moves); the watch route merges every group's
  changes; table scans and listings and transactions span groups and are
  ``421``.
- **Metrics**: ``amber_requests{frontend="http",command=<route>}`` and the
  latency histogram, timed to the response's first byte (an event stream is
  counted once, when it opens), and ``amber_requests_in_flight``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ...errors import TooLarge
from ..context import ServerContext
from .docs import DOCS_PREFIX
from .problems import problem
from .ui import UI_PREFIX

__all__ = ["FrontMiddleware", "undecodable"]

_OPEN_PATHS = frozenset(("/health", "/openapi.json"))
#: Path prefixes served without the password: pages and assets that hold no data.
_OPEN_PREFIXES = (UI_PREFIX, DOCS_PREFIX)
#: Routes that read or write keys: on a sharded node only single-key routes
#: are served (redirected to the key's group when needed, see ``HttpApi.route``).
#: (``/v1/watch`` is served there: it merges every group's stream.)
_KEYED_PATHS = ("/v1/tables", "/v1/txn")


def _single_key(path: str) -> bool:
    """``/v1/tables/{table}/keys/{key}``: one key, routed by its hash slot."""
    parts = path.split("/", 5)
    return len(parts) == 6 and parts[1:3] == ["v1", "tables"] and parts[4] == "keys"


def _open(path: str) -> bool:
    """Whether ``path`` is served without the password (probes, the console, the docs)."""
    if path in _OPEN_PATHS:
        return True
    return any(path == prefix or path.startswith(prefix + "/") for prefix in _OPEN_PREFIXES)


def _authorized(header: bytes | None, password: str) -> bool:
    if header is None:
        return False
    scheme, _, credentials = header.decode("latin-1").strip().partition(" ")
    scheme = scheme.lower()
    given = credentials.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(given, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        given = decoded.partition(":")[2]
    elif scheme != "bearer":
        return False
    return hmac.compare_digest(given.encode(), password.encode())


def _not_utf8(raw: bytes, where: str) -> str | None:
    """Why ``raw`` (percent-encoded) is not UTF-8 once decoded, or ``None`` when it is."""
    if raw.isascii() and b"%" not in raw:
        return None
    if not raw.isascii():
        byte = next(b for b in raw if b >= 0x80)
        return f"the request's {where} has a byte that is not percent-encoded (0x{byte:02X})"
    decoded = unquote_to_bytes(raw)
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"the request's {where} is not valid UTF-8 once percent-decoded "
            f"(%{decoded[exc.start]:02X}: {exc.reason}); table names and keys are UTF-8 "
            "text: percent-encode each byte of their UTF-8 encoding"
        )
    return None


def undecodable(scope: Scope) -> Response | None:
    """``400`` when the request's raw path or query string is not percent-encoded UTF-8.

    Reads ``raw_path`` (the path as received), not ``path``, which the
    server already decoded with U+FFFD for every bad byte.
    """
    raw_path = scope.get("raw_path")
    detail = None if raw_path is None else _not_utf8(raw_path, "path")
    if detail is not None:
        return problem(400, "invalid-name", detail)
    query = scope.get("query_string", b"")
    detail = _not_utf8(query, "query string")
    if detail is not None:
        return problem(400, "invalid-argument", detail)
    return None


class FrontMiddleware:
    """Password check, body limit and metrics for one app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        ctx: ServerContext,
        body_limit: int,
        password: Callable[[], str] | None = None,
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.body_limit = body_limit
        self.password = password
        self.in_flight = ctx.metrics.in_flight.labels("http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        secret = self.password() if self.password is not None else ""
        if (
            secret
            and not _open(scope["path"])
            and not _authorized(headers.get(b"authorization"), secret)
        ):
            response = problem(
                401,
                "unauthorized",
                "this server needs its password: send Authorization: Bearer <password>",
                {"WWW-Authenticate": 'Bearer realm="amber"'},
            )
            await response(scope, receive, send)
            self._observe(scope, time.perf_counter(), 401)
            return
        if (
            self.ctx.sharded
            and scope["path"].startswith(_KEYED_PATHS)
            and not _single_key(scope["path"])
        ):
            response = problem(
                421,
                "misdirected",
                "this node's group owns only some hash slots: scans, table listings and "
                "transactions span groups and are not routed; use the single-key routes "
                "(redirected to the key's group) or a Redis Cluster client (RESP)",
            )
            await response(scope, receive, send)
            self._observe(scope, time.perf_counter(), 421)
            return
        refused = undecodable(scope)
        if refused is not None:
            await refused(scope, receive, send)
            self._observe(scope, time.perf_counter(), 400)
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.body_limit:
            response = problem(
                413,
                "too-large",
                f"request body is {int(declared)} bytes; the limit is {self.body_limit}",
            )
            await response(scope, receive, send)
            self._observe(scope, time.perf_counter(), 413)
            return
        await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        received = 0
        limit = self.body_limit
        status = 500
        observed = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge(f"request body is over the limit of {limit} bytes")
            return message

        async def timed_send(message: Message) -> None:
            nonlocal status, observed
            if message["type"] == "http.response.start" and not observed:
                status = message["status"]
                observed = True
                self._observe(scope, started, status)
            await send(message)

        self.in_flight.inc()
        try:
            await self.app(scope, limited_receive, timed_send)
        finally:
            self.in_flight.dec()
            if not observed:
                self._observe(scope, started, status)

    def _observe(self, scope: Scope, started: float, status: int) -> None:
        route = scope.get("route")
        command = getattr(route, "name", None) or "unmatched"
        self.ctx.metrics.observe("http", command, time.perf_counter() - started, status < 400)
