"""A real HTTP + KV text server in the test process, on loopback ports.

``LiveServer`` runs the FastAPI app under uvicorn and the KV text listener on
an event loop of its own thread, the way ``amber serve`` runs them on its
loop, so tests talk to them over real sockets with real clients (httpx, raw
sockets) while still reaching the database directly.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from typing import Any

import uvicorn

from amber.database import Database
from amber.server.context import ServerContext
from amber.server.http import close_streams, create_app
from amber.server.kvtext import start_kvtext

START_TIMEOUT = 10.0


class LiveServer:
    """HTTP and KV text front ends of one database, served from a background thread."""

    def __init__(
        self,
        db: Database,
        *,
        password: Callable[[], str] | None = None,
        max_line: int | None = None,
        loop: str = "asyncio",
    ) -> None:
        self.db = db
        self.ctx = ServerContext.for_database(db)
        self.app = create_app(self.ctx, password=password)
        self.max_line = max_line
        self.loop_kind = loop
        self.loop: asyncio.AbstractEventLoop | None = None
        self.http: uvicorn.Server | None = None
        self.kvtext: asyncio.Server | None = None
        self.http_port = 0
        self.kvtext_port = 0
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def __enter__(self) -> LiveServer:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError("the live server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            if self.loop_kind == "uvloop":
                import uvloop

                uvloop.run(self._serve())
            else:
                asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only then.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
        self.http_port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self.http = uvicorn.Server(config)
        task = asyncio.create_task(self.http.serve(sockets=[sock]))
        self.kvtext = await start_kvtext(self.ctx, "127.0.0.1", 0, max_line=self.max_line)
        self.kvtext_port = self.kvtext.sockets[0].getsockname()[1]
        for _ in range(500):
            if self.http.started or task.done():
                break
            await asyncio.sleep(0.01)
        self._ready.set()
        await task
        # Let the KV text listener close the connections it still has.
        for _ in range(100):
            if not self.gauge("amber_connections", frontend="kvtext"):
                break
            await asyncio.sleep(0.01)

    def gauge(self, name: str, **labels: str) -> float:
        """The current value of one metric sample (0 when absent)."""
        value = self.ctx.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the server's loop."""
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn)

    def stop(self) -> None:
        if self.loop is not None and self.http is not None:

            def shut() -> None:
                close_streams(self.app)
                assert self.http is not None
                self.http.should_exit = True
                if self.kvtext is not None:
                    self.kvtext.close()

            self.loop.call_soon_threadsafe(shut)
        self._thread.join(15)
        assert not self._thread.is_alive(), "the live server did not stop"


def problem(response: Any) -> dict[str, Any]:
    """The problem document of an error response (checks its media type and shape)."""
    assert response.headers["content-type"] == "application/problem+json", response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    assert body["type"].startswith("/problems/")
    assert body["title"] and body["detail"]
    return body


class SseReader:
    """Reads Server-Sent Events from an httpx streaming response (spec-level parsing)."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self._lines = response.iter_lines()
        self.comments: list[str] = []

    def next(self) -> dict[str, str]:
        """The next event: its ``event`` (default ``message``), ``data`` and ``id`` if sent."""
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in self._lines:
            if line == "":
                if data or fields:
                    fields.setdefault("event", "message")
                    fields["data"] = "\n".join(data)
                    return fields
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        raise EOFError("the event stream ended")

    def take(self, count: int) -> list[dict[str, str]]:
        return [self.next() for _ in range(count)]
