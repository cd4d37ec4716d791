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
    and ``MAX_ARGS`` arguments, refused as soon as a header says more (a bulk
    length or argument count too large, as Redis does with its
    ``proto-max-bulk-len``) or, failing that, as soon as more is buffered; an
    inline line at most
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
import re
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


#: How much of a stream is kept to check headers exactly (see ``_feed_reader``).
_MAX_BACKLOG = 1024 * 1024
#: Enough bytes of the previous read to hold a header split between reads.
_TAIL = 24


class ProtocolError(Exception):
    """The client sent bytes that are not a command; close after replying."""


class RequestParser:
    """Turns the bytes of one connection into commands (lists of ``bytes``).

    ``feed`` what arrives, then call ``next`` until it returns ``None``.
    """

    __slots__ = (
        "_backlog",
        "_backlog_size",
        "_big_bulk",
        "_big_count",
        "_max_inline",
        "_max_request",
        "_mid_frame",
        "_pending",
        "_reader",
        "_refused",
        "_since_frame",
        "_synced",
        "_tail",
    )

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
        # Headers are checked without parsing every one in Python (hiredis
        # does that in C): a regex looks for a "*" (in what is fed) or a "$"
        # (where hiredis waits) followed by enough digits to pass a limit, and
        # only then is what was fed since the last frame boundary (the
        # backlog) walked header by header.
        digits = min(len(str(max_request_bytes)), len(str(MAX_ARGS)))
        self._big_count = re.compile(rb"\*[0-9]{%d}" % digits)
        self._big_bulk = re.compile(rb"\$[0-9]{%d}" % digits)
        #: What was fed to hiredis since a frame boundary (while ``_synced``).
        self._backlog: list[bytes] = []
        self._backlog_size = 0
        self._synced = True
        #: The last bytes fed, for a header split between two reads.
        self._tail = b""
        #: Bytes fed since hiredis last returned a frame (bounds a frame of many bulks).
        self._since_frame = 0
        #: Why the stream is refused (raised once the commands before it are out).
        self._refused: str | None = None

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        if not data:
            return
        if self._mid_frame or (not self._pending and data[0] == 42):  # b"*"
            self._feed_reader(data)
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
            if self._refused is not None and not self._mid_frame:
                raise ProtocolError(self._refused)
            if self._mid_frame:
                try:
                    frame = reader.gets()
                except hiredis.ProtocolError as exc:
                    raise ProtocolError(self._refused or f"Protocol error: {exc}") from None
                except MemoryError:  # a count hiredis believed (see _feed_reader)
                    raise ProtocolError("Protocol error: invalid multibulk length") from None
                if not reader.has_data():
                    self._mid_frame = frame is False
                if frame is not False:
                    self._since_frame = 0
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
                self._check_waiting_bulk()
                if self._refused is not None:
                    raise ProtocolError(self._refused)
                # hiredis needs more bytes. What it holds is about the part of
                # the frame it has (it drops consumed bytes in 1 KiB steps);
                # what was fed since the last frame, at most this frame.
                if reader.len() > self._max_request or self._since_frame > self._max_request:
                    raise ProtocolError(
                        f"Protocol error: request larger than {self._max_request} bytes"
                    )
                if not self._pending:
                    return None
                # The rest of the frame is in _pending.
                data = bytes(self._pending)
                self._pending.clear()
                self._feed_reader(data)
                continue
            if not self._pending:
                return None
            if self._pending[0] == 42:
                data = bytes(self._pending)
                self._pending.clear()
                self._feed_reader(data)
                self._mid_frame = True
                continue
            command = self._inline()
            if command is None:
                return None
            if command:
                return command

    def _feed_reader(self, data: bytes) -> None:
        """Hand ``data`` to hiredis, noting first whether an argument count is over a limit.

        hiredis would allocate the list for a count at once: the frame with a
        count over the limit (and what follows) never reaches it.
        """
        if self._refused is not None:
            return
        if not self._mid_frame:  # hiredis holds nothing: data starts a frame
            self._backlog.clear()
            self._backlog_size = 0
            self._synced = True
            self._tail = b""
        if self._synced:
            self._backlog.append(data)
            self._backlog_size += len(data)
            if self._backlog_size > _MAX_BACKLOG:
                # A long pipeline with no pause between frames: too much to
                # keep; the buffered-size check in ``next`` still bounds a request.
                self._backlog.clear()
                self._synced = False
        # hiredis consumes an array's header at once: look for a large one now.
        if (
            self._synced
            and self._refused is None
            and (
                self._big_count.search(data)
                or (self._tail and self._big_count.search(self._tail + data[:_TAIL]))
            )
        ):
            found = self._check_headers(b"".join(self._backlog))
            if found is not None:
                self._refused, frame = found
                keep = frame - (self._backlog_size - len(data))  # of data, before that frame
                if keep > 0:
                    self._reader.feed(data[:keep])
                return
        self._tail = (self._tail + data[:_TAIL])[-_TAIL:] if len(data) < _TAIL else data[-_TAIL:]
        self._since_frame += len(data)
        self._reader.feed(data)

    def _check_waiting_bulk(self) -> None:
        """hiredis waits for more bytes: refuse now if it waits on a bulk over the limit.

        hiredis keeps a bulk's header until the bulk is complete, and drops
        consumed bytes in 1 KiB steps: the header it waits on starts in the
        first 1 KiB of the bytes it holds (the last ``reader.len()`` fed).
        """
        if not self._synced or self._refused is not None:
            return
        held = self._reader.len()
        window = b""
        for chunk in reversed(self._backlog):  # the last `held` bytes fed, from their start
            window = chunk + window
            if len(window) >= held:
                break
        start = len(window) - held
        if self._big_bulk.search(window, max(start, 0), start + 1024 + _TAIL):
            found = self._check_headers(b"".join(self._backlog))
            if found is not None:
                self._refused = found[0]

    def _check_headers(self, stream: bytes) -> tuple[str, int] | None:
        """Why the frames in ``stream`` (from a frame's start) break a limit, and where.

        The offset is that of the frame breaking it. ``None`` when none does;
        stops quietly where ``stream`` ends or a header is malformed (hiredis
        answers that one).
        """
        limit = self._max_request
        i, end = 0, len(stream)
        while i < end:
            frame = i
            if stream[i] != 42:  # b"*"
                return None
            eol = stream.find(b"\r\n", i)
            if eol < 0:
                return None
            try:
                count = int(stream[i + 1 : eol])
            except ValueError:
                return None
            if count > MAX_ARGS:
                return "Protocol error: invalid multibulk length", frame
            size = eol + 2 - i
            i = eol + 2
            for _ in range(max(count, 0)):
                if i >= end:
                    return None
                if stream[i] != 36:  # b"$"
                    return None
                eol = stream.find(b"\r\n", i)
                if eol < 0:
                    return None
                try:
                    length = int(stream[i + 1 : eol])
                except ValueError:
                    return None
                size += eol + 2 - i + max(length, 0) + 2
                if length > limit:
                    return f"Protocol error: invalid bulk length (larger than {limit} bytes)", frame
                if size > limit:
                    return f"Protocol error: request larger than {limit} bytes", frame
                i = eol + 2 + max(length, 0) + 2
        return None

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
