"""uvicorn's HTTP protocol with read deadlines (slowloris).

uvicorn times out idle keep-alive connections but not a request that is
being sent: a client that sends half its headers and then nothing (or a
byte every few seconds) holds a connection, a parser and memory forever.
:func:`protocol_with_timeouts` gives each request ``header_timeout`` seconds
from its first byte to the end of its headers (a deadline, so trickling does
not extend it), then ``body_timeout`` seconds of silence at most while its
body arrives. Past either the connection gets ``408`` and is closed.

It also refuses a connection (``503``, closed) while ``full()`` says the
server has as many clients as it takes (``maxclients``, over every front
end): an open stream or a slow request holds a file descriptor each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["protocol_with_timeouts"]

_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 34\r\n\r\nthe request was not sent in time\r\n"
)
_FULL_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\ncontent-length: 31\r\n\r\nmax number of clients reached\r\n"
)


def protocol_with_timeouts(
    header_timeout: float, body_timeout: float, full: Callable[[], bool] | None = None
) -> type[HttpToolsProtocol]:
    """An ``HttpToolsProtocol`` subclass with these deadlines (``uvicorn.Config(http=…)``)."""

    class TimedHttpToolsProtocol(HttpToolsProtocol):
        _timer: asyncio.TimerHandle | None = None
        _reading_body = False

        def _arm(self, seconds: float) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self) -> None:
            self._timer = None
            transport = self.transport
            if not transport.is_closing():
                transport.write(_TIMEOUT_RESPONSE)
                transport.close()

        def connection_made(self, transport: Any) -> None:
            refused = full is not None and full()  # counted before this one joins
            super().connection_made(transport)
            if refused:
                transport.write(_FULL_RESPONSE)
                transport.close()
                return
            self._arm(header_timeout)  # the first request's headers

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._reading_body:
                self._arm(body_timeout)  # silence, not the whole body, is bounded
            super().data_received(data)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_body = False
            self._arm(header_timeout)

        def on_headers_complete(self) -> None:
            self._reading_body = True
            self._arm(body_timeout)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._reading_body = False
            self._disarm()
            super().on_message_complete()

    return TimedHttpToolsProtocol
