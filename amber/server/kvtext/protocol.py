"""The KV text protocol, sans-I/O: bytes in, requests out; replies to bytes.

The line protocol of the ``KVServer`` in Elixir's "Mix and OTP" guide. A
request is one line ending in ``\\n`` (``\\r\\n`` in the guide), split on
whitespace like Elixir's ``String.split/1``::

    CREATE bucket            -> OK
    PUT bucket key value     -> OK
    GET bucket key           -> value\\r\\nOK      (a missing key: an empty line, then OK)
    DELETE bucket key        -> OK

A missing bucket answers ``NOT FOUND``; anything else — an unknown or
lower-case verb, a wrong number of words, an empty line — answers
``UNKNOWN COMMAND``. Every reply line ends in ``\\r\\n``. Amber adds one
reply the guide leaves to a crash: ``ERROR <message>`` for input Amber
refuses (an invalid bucket name, a line that is not UTF-8); the connection
stays usable.

Nothing here touches a socket: :class:`LineReader` turns received bytes
into :data:`Request` values, :func:`parse` turns one line into one, and the
``reply_*`` functions encode the answers (style: h11's sans-I/O split).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "OK",
    "Create",
    "Delete",
    "Get",
    "Invalid",
    "LineReader",
    "LineTooLong",
    "NOT_FOUND",
    "Put",
    "Request",
    "UNKNOWN_COMMAND",
    "Unknown",
    "parse",
    "render_value",
    "reply_error",
    "reply_value",
]

OK = b"OK\r\n"
NOT_FOUND = b"NOT FOUND\r\n"
UNKNOWN_COMMAND = b"UNKNOWN COMMAND\r\n"


@dataclass(frozen=True, slots=True)
class Create:
    bucket: str


@dataclass(frozen=True, slots=True)
class Put:
    bucket: str
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Get:
    bucket: str
    key: str


@dataclass(frozen=True, slots=True)
class Delete:
    bucket: str
    key: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """An unknown verb or a wrong number of words: ``UNKNOWN COMMAND``."""

    line: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line that cannot be a command at all (not UTF-8): ``ERROR <reason>``."""

    reason: str


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line grew past the limit: answer ``ERROR`` and close (the reader is done)."""

    limit: int


Request = Create | Put | Get | Delete | Unknown | Invalid | LineTooLong


def parse(line: str) -> Request:
    """One line (its line ending optional) as a request; ``KVServer.Command.parse``."""
    words = line.split()
    match words:
        case ["CREATE", bucket]:
            return Create(bucket)
        case ["PUT", bucket, key, value]:
            return Put(bucket, key, value)
        case ["GET", bucket, key]:
            return Get(bucket, key)
        case ["DELETE", bucket, key]:
            return Delete(bucket, key)
        case _:
            return Unknown(line.rstrip("\r\n"))


class LineReader:
    """Splits a byte stream into requests, one per ``\\n``-terminated line.

    Holds at most ``max_line`` bytes of an unfinished line: a longer line
    ends the stream with :class:`LineTooLong` (a client that never sends a
    newline cannot make the server buffer without bound), and the reader
    takes nothing more.
    """

    __slots__ = ("_buffer", "_done", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = b""
        self._done = False

    def feed(self, data: bytes) -> list[Request]:
        """The complete requests in ``data`` (with what was buffered before)."""
        if self._done:
            return []
        buffer = self._buffer + data if self._buffer else data
        *lines, rest = buffer.split(b"\n")
        self._buffer = rest
        requests: list[Request] = []
        for raw in lines:
            if len(raw) > self.max_line:
                return self._too_long(requests)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                requests.append(Invalid(f"line is not valid UTF-8 (byte {exc.start})"))
                continue
            requests.append(parse(text))
        if len(rest) > self.max_line:
            return self._too_long(requests)
        return requests

    def _too_long(self, requests: list[Request]) -> list[Request]:
        self._done = True
        self._buffer = b""
        requests.append(LineTooLong(self.max_line))
        return requests

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held."""
        return len(self._buffer)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def render_value(value: Any) -> str:
    """A stored value as one line of text.

    A string is sent as it is — what ``PUT`` stored comes back unchanged —
    unless it holds a line break, which would end the reply early; then, like
    any other document (written over HTTP or RESP), it is sent as compact JSON.
    """
    if type(value) is str and "\n" not in value and "\r" not in value:
        return value
    return _dumps(value)


def reply_value(text: str) -> bytes:
    """The reply to ``GET``: the value's line (empty for a missing key), then ``OK``."""
    return text.encode("utf-8") + b"\r\nOK\r\n"


def reply_error(message: str) -> bytes:
    """``ERROR <message>``, on one line."""
    flat = " ".join(message.split())
    return f"ERROR {flat}\r\n".encode()
