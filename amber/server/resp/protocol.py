"""The Redis wire format, sans I/O: bytes in, commands out; replies in, bytes out.

Nothing here touches a socket (style: h11, asyncpg's protocol core). A test
feeds bytes to :class:`RequestParser` and asserts on the commands it yields,
or encodes a reply with :func:`encoder_for` and compares bytes.

Requests
    Clients send arrays of bulk strings (``*2\\r\\n$3\\r\\nGET\\r\\n$1\\r\\nk\\r\\n``),
    parsed by hiredis' C reader; "inline" commands (``PING\\r\\n``, what a
    human types into telnet) are split on whitespace, with ``"..."``/``'...'``
    quoting as in redis-cli; they are recognized where the bytes of a read
    start between two requests (a packet mixing a RESP request and an inline
    one after it is a protocol error). A request is at most ``max_request_bytes``
    (refused as soon as more than that is buffered), an inline line at most
    ``max_inline_bytes``; anything else that is not a command — nested arrays,
    integers, a bad length — is a :class:`ProtocolError`, after which the
    stream cannot be resynchronized and the connection must close.

Replies
    Python values map to RESP types; RESP3 (after ``HELLO 3``) has richer
    types that RESP2 flattens:

    =====================  ==========================  ===========================
    Python                 RESP3                       RESP2
    =====================  ==========================  ===========================
    ``bytes``, ``str``     blob string ``$``           same
    :class:`Simple`        simple string ``+``         same
    :class:`ErrorReply`    simple error ``-``          same
    ``int``                number ``:``                same
    ``bool``               boolean ``#t``/``#f``       number ``:1``/``:0``
    ``float``              double ``,``                blob string
    ``None``               null ``_``                  null bulk ``$-1``
    :data:`NULL_ARRAY`     null ``_``                  null array ``*-1``
    ``list``, ``tuple``    array ``*``                 same
    ``dict``               map ``%``                   flat array of pairs
    ``set``, ``frozenset`` set ``~``                   array
    :class:`Push`          push ``>``                  array
    :class:`Verbatim`      verbatim ``=``              blob string
    :class:`Replies`       each item, one after other  same
    =====================  ==========================  ===========================
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import hiredis

from ..commands.replies import NULL_ARRAY, ErrorReply, Push, Replies, Simple, Verbatim

__all__ = [
    "NULL_ARRAY",
    "ErrorReply",
    "ProtocolError",
    "Push",
    "Replies",
    "RequestParser",
    "Simple",
    "Verbatim",
    "encode_error",
    "encoder_for",
]

#: The largest request accepted unless configured otherwise (Redis: 512 MiB).
DEFAULT_MAX_REQUEST = 64 * 1024 * 1024 + 64 * 1024
DEFAULT_MAX_INLINE = 64 * 1024
#: Redis' own bound on the number of arguments of one command.
MAX_ARGS = 1024 * 1024


class ProtocolError(Exception):
    """The client sent bytes that are not a command; close after replying."""


class RequestParser:
    """Turns the bytes of one connection into commands (lists of ``bytes``).

    ``feed`` what arrives, then call ``next`` until it returns ``None``.
    """

    __slots__ = ("_max_inline", "_max_request", "_mid_frame", "_pending", "_reader")

    def __init__(
        self,
        max_request_bytes: int = DEFAULT_MAX_REQUEST,
        max_inline_bytes: int = DEFAULT_MAX_INLINE,
    ) -> None:
        self._reader = hiredis.Reader()
        self._max_request = max_request_bytes
        self._max_inline = max_inline_bytes
        #: Bytes not handed to hiredis yet (only while reading inline commands).
        self._pending = bytearray()
        #: Whether hiredis holds part of a frame (its bytes may all be consumed).
        self._mid_frame = False

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        if not data:
            return
        if self._mid_frame or (not self._pending and data[0] == 42):  # b"*"
            self._reader.feed(data)
            self._mid_frame = True
        else:
            self._pending += data

    @property
    def buffered(self) -> bool:
        """Whether bytes not returned as a command yet are held."""
        return self._mid_frame or bool(self._pending)

    def next(self) -> list[bytes] | None:
        """The next complete command, or ``None`` until more bytes arrive.

        Raises :class:`ProtocolError` for a malformed or oversized request.
        """
        reader = self._reader
        while True:
            if self._mid_frame:
                try:
                    frame = reader.gets()
                except hiredis.ProtocolError as exc:
                    raise ProtocolError(f"Protocol error: {exc}") from None
                if not reader.has_data():
                    self._mid_frame = frame is False
                if type(frame) is list:
                    if not frame:
                        continue  # "*0": Redis ignores it
                    for arg in frame:
                        if type(arg) is not bytes:
                            raise ProtocolError("Protocol error: expected an array of bulk strings")
                    if len(frame) > MAX_ARGS:
                        raise ProtocolError("Protocol error: invalid multibulk length")
                    return frame
                if frame is None:
                    continue  # "*-1"
                if frame is not False:
                    raise ProtocolError("Protocol error: expected an array of bulk strings")
                # hiredis needs more bytes. What it holds is about the part of
                # the frame it has (it drops consumed bytes in 1 KiB steps).
                if reader.len() > self._max_request:
                    raise ProtocolError(
                        f"Protocol error: request larger than {self._max_request} bytes"
                    )
                if not self._pending:
                    return None
                # The rest of the frame is in _pending.
                data = bytes(self._pending)
                self._pending.clear()
                reader.feed(data)
                continue
            if not self._pending:
                return None
            if self._pending[0] == 42:
                data = bytes(self._pending)
                self._pending.clear()
                reader.feed(data)
                self._mid_frame = True
                continue
            command = self._inline()
            if command is None:
                return None
            if command:
                return command

    def _inline(self) -> list[bytes] | None:
        """One inline command line from ``_pending`` (``[]`` for a blank line)."""
        pending = self._pending
        end = pending.find(b"\n")
        if end < 0:
            if len(pending) > self._max_inline:
                raise ProtocolError("Protocol error: too big inline request")
            return None
        line = bytes(pending[:end]).rstrip(b"\r")
        del pending[: end + 1]
        if len(line) > self._max_inline:
            raise ProtocolError("Protocol error: too big inline request")
        return split_inline(line)


def split_inline(line: bytes) -> list[bytes]:
    """Split an inline command like redis-cli does (quotes, ``\\n``/``\\xHH`` escapes)."""
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in b" \t":
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = line[i] if line[i] in b"\"'" else 0
        if quote:
            i += 1
            while True:
                if i >= n:
                    raise ProtocolError("Protocol error: unbalanced quotes in request")
                c = line[i]
                if c == quote:
                    i += 1
                    if i < n and line[i] not in b" \t":
                        raise ProtocolError("Protocol error: unbalanced quotes in request")
                    break
                if c == 92 and quote == 34 and i + 1 < n:  # backslash in "..."
                    nxt = line[i + 1]
                    if nxt == 120 and i + 3 < n:  # \xHH
                        try:
                            current.append(int(line[i + 2 : i + 4], 16))
                            i += 4
                            continue
                        except ValueError:
                            pass
                    current.append(_ESCAPES.get(nxt, nxt))
                    i += 2
                    continue
                if c == 92 and quote == 39 and i + 1 < n and line[i + 1] == 39:
                    current.append(39)
                    i += 2
                    continue
                current.append(c)
                i += 1
        else:
            while i < n and line[i] not in b" \t":
                current.append(line[i])
                i += 1
        args.append(bytes(current))


_ESCAPES = {110: 10, 114: 13, 116: 9, 98: 8, 97: 7}


# -- encoding ------------------------------------------------------------------


def _clean(text: str) -> str:
    """Error and simple strings are one line on the wire."""
    if "\r" in text or "\n" in text:
        return text.replace("\r", " ").replace("\n", " ")
    return text


def encode_error(message: str) -> bytes:
    return b"-" + _clean(message).encode("utf-8", "replace") + b"\r\n"


def _float_text(value: float) -> bytes:
    if math.isnan(value):
        return b"nan"
    if value in (float("inf"), float("-inf")):
        return b"inf" if value > 0 else b"-inf"
    text = repr(value)
    return text[:-2].encode() if text.endswith(".0") else text.encode()


Encoder = Callable[[Any], bytes]


def encoder_for(protocol: int) -> Encoder:
    """The reply encoder for RESP ``protocol`` 2 or 3."""
    return _encode3 if protocol == 3 else _encode2


def _encode2(value: Any) -> bytes:
    kind = type(value)
    if kind is bytes:  # the commonest replies first, without a list
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if kind is Simple:
        return _simple(value)
    if value is None:
        return b"$-1\r\n"
    out: list[bytes] = []
    _write(value, out, False)
    return b"".join(out)


def _encode3(value: Any) -> bytes:
    kind = type(value)
    if kind is bytes:
        return b"$%d\r\n%b\r\n" % (len(value), value)
    if kind is Simple:
        return _simple(value)
    out: list[bytes] = []
    _write(value, out, True)
    return b"".join(out)


_simple_cache: dict[str, bytes] = {}


def _simple(value: str) -> bytes:
    """``+text``; the few simple strings there are (OK, QUEUED, PONG …) are kept encoded."""
    data = _simple_cache.get(value)
    if data is None:
        data = b"+" + _clean(value).encode() + b"\r\n"
        if len(_simple_cache) < 256:
            _simple_cache[str(value)] = data
    return data


def _write(value: Any, out: list[bytes], resp3: bool) -> None:
    kind = type(value)
    if kind is bytes:
        out.append(b"$%d\r\n%b\r\n" % (len(value), value))
    elif kind is str:
        data = value.encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif kind is int:
        out.append(b":%d\r\n" % value)
    elif value is None:
        out.append(b"_\r\n" if resp3 else b"$-1\r\n")
    elif kind is Simple:
        out.append(_simple(value))
    elif kind is ErrorReply:
        out.append(encode_error(value))
    elif kind is list or kind is tuple or kind is Push:
        out.append(b"%b%d\r\n" % (b">" if resp3 and kind is Push else b"*", len(value)))
        for item in value:
            _write(item, out, resp3)
    elif kind is Replies:
        for item in value:
            _write(item, out, resp3)
    elif kind is bool:
        out.append(
            (b"#t\r\n" if value else b"#f\r\n") if resp3 else (b":1\r\n" if value else b":0\r\n")
        )
    elif kind is float:
        text = _float_text(value)
        out.append(b",%b\r\n" % text if resp3 else b"$%d\r\n%b\r\n" % (len(text), text))
    elif isinstance(value, dict):
        if resp3:
            out.append(b"%%%d\r\n" % len(value))
        else:
            out.append(b"*%d\r\n" % (2 * len(value)))
        for k, v in value.items():
            _write(k, out, resp3)
            _write(v, out, resp3)
    elif kind is set or kind is frozenset:
        out.append(b"%b%d\r\n" % (b"~" if resp3 else b"*", len(value)))
        for item in value:
            _write(item, out, resp3)
    elif kind is Verbatim:
        data = value.encode()
        if resp3:
            out.append(b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data))
        else:
            out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif value is NULL_ARRAY:
        out.append(b"_\r\n" if resp3 else b"*-1\r\n")
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    elif isinstance(value, str):  # a str subclass not handled above
        _write(str(value), out, resp3)
    elif isinstance(value, int):
        out.append(b":%d\r\n" % int(value))
    elif isinstance(value, list | tuple):
        _write(list(value), out, resp3)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as a RESP reply")
