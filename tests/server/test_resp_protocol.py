"""The RESP core without sockets: bytes in, commands out; replies in, bytes out."""

from __future__ import annotations

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amber.server.resp.protocol import (
    NULL_ARRAY,
    ErrorReply,
    ProtocolError,
    Push,
    Replies,
    RequestParser,
    Simple,
    Verbatim,
    encoder_for,
    split_inline,
)


def pack(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def drain(parser: RequestParser) -> list[list[bytes]]:
    out = []
    while (command := parser.next()) is not None:
        out.append(command)
    return out


def test_commands_come_out_whole_however_the_bytes_are_split() -> None:
    # Inline commands (telnet) are read where a read starts between frames.
    stream = b"PING\r\n" + pack(b"SET", b"k", b"v" * 100) + pack(b"GET", b"k") + pack(b"DEL", b"k")
    for step in (1, 2, 3, 7, 64, len(stream)):
        parser = RequestParser()
        got: list[list[bytes]] = []
        for i in range(0, len(stream), step):
            parser.feed(stream[i : i + step])
            got += drain(parser)
        assert got == [[b"PING"], [b"SET", b"k", b"v" * 100], [b"GET", b"k"], [b"DEL", b"k"]]


def test_inline_commands_follow_redis_cli_quoting() -> None:
    assert split_inline(b"SET  k \"a b\\n\" 'c'") == [b"SET", b"k", b"a b\n", b"c"]
    assert split_inline(b'ECHO "\\x41"') == [b"ECHO", b"A"]
    assert split_inline(b"   ") == []
    with pytest.raises(ProtocolError):
        split_inline(b'ECHO "open')


def test_empty_arrays_and_blank_lines_are_skipped() -> None:
    parser = RequestParser()
    parser.feed(b"\r\n \r\n*0\r\n*-1\r\n" + pack(b"PING"))
    assert drain(parser) == [[b"PING"]]


@pytest.mark.parametrize(
    "frame",
    [b"*1\r\n:5\r\n", b"*1\r\n*1\r\n$1\r\na\r\n", b"*1\r\n$x\r\n"],
)
def test_anything_but_an_array_of_bulk_strings_is_a_protocol_error(frame: bytes) -> None:
    parser = RequestParser()
    parser.feed(frame)
    with pytest.raises(ProtocolError):
        drain(parser)


def test_requests_over_the_limit_are_refused_before_they_complete() -> None:
    parser = RequestParser(max_request_bytes=1000)
    parser.feed(b"*2\r\n$3\r\nSET\r\n$100000\r\n")
    parser.feed(b"x" * 2000)
    with pytest.raises(ProtocolError, match="larger than 1000"):
        drain(parser)
    inline = RequestParser(max_inline_bytes=100)
    inline.feed(b"PING " + b"x" * 200)
    with pytest.raises(ProtocolError, match="inline"):
        drain(inline)


@pytest.mark.parametrize(
    ("stream", "error"),
    [
        (b"*1\r\n$999999999999\r\n", "invalid bulk length"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n", "invalid bulk length"),
        (b"*1000000000\r\n", "invalid multibulk length"),
        (b"*4000000000\r\n$3\r\nSET\r\n", "invalid multibulk length"),  # hiredis: MemoryError
    ],
)
def test_a_header_over_a_limit_is_refused_before_its_payload(stream: bytes, error: str) -> None:
    parser = RequestParser(max_request_bytes=1000)
    parser.feed(pack(b"PING") + stream)
    assert parser.next() == [b"PING"]  # what came before is still answered
    with pytest.raises(ProtocolError, match=error):
        parser.next()
    split = RequestParser(max_request_bytes=1000)
    for i in range(len(stream)):  # one byte at a time: headers split anywhere
        split.feed(stream[i : i + 1])
        try:
            assert split.next() is None
        except ProtocolError as exc:
            assert error in str(exc)
            break
    else:
        raise AssertionError("never refused")


def test_a_request_of_many_bulks_is_refused_before_it_completes() -> None:
    # hiredis drops the first bulk once it holds it: what it buffers stays small.
    parser = RequestParser(max_request_bytes=2000)
    parser.feed(b"*3\r\n$3\r\nSET\r\n$1500\r\n" + b"k" * 1500 + b"\r\n$1500\r\n")
    assert drain(parser) == []
    parser.feed(b"v" * 600)
    with pytest.raises(ProtocolError, match="larger than 2000"):
        drain(parser)


def test_header_like_bytes_inside_a_value_are_not_refused() -> None:
    value = b"$999999999999\r\n*4000000000\r\n" * 30
    parser = RequestParser(max_request_bytes=4096)
    stream = pack(b"SET", b"k", value)
    parser.feed(stream[:-10])
    assert parser.next() is None
    parser.feed(stream[-10:])
    assert parser.next() == [b"SET", b"k", value]


def fed_in_pieces(parser: RequestParser, stream: bytes, cuts: list[int]) -> list[list[bytes]]:
    """Feed ``stream`` cut at ``cuts``; every command the parser gave back."""
    got: list[list[bytes]] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        parser.feed(stream[start:cut])
        got += drain(parser)
        start = cut
    return got


@given(
    st.lists(
        st.lists(st.sampled_from([b"x", b"$99999999\r\n", b"*9999999\r\n", b""]), max_size=6),
        max_size=6,
    ),
    st.data(),
)
@settings(max_examples=150, deadline=None)
def test_commands_under_the_limit_are_never_refused(
    values: list[list[bytes]], data: st.DataObject
) -> None:
    commands = [[b"SET", b"".join(v)] for v in values]
    stream = b"".join(pack(*c) for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = RequestParser(max_request_bytes=1000)
    assert fed_in_pieces(parser, stream, cuts) == commands


@given(st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=5), max_size=8), st.data())
@settings(max_examples=150, deadline=None)
def test_any_commands_split_anywhere_round_trip(
    commands: list[list[bytes]], data: st.DataObject
) -> None:
    stream = b"".join(pack(*c) for c in commands)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    parser = RequestParser()
    assert fed_in_pieces(parser, stream, cuts) == commands


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_parse_or_fail_cleanly(junk: bytes) -> None:
    parser = RequestParser(max_request_bytes=4096, max_inline_bytes=4096)
    try:
        parser.feed(junk)
        for command in drain(parser):
            assert command and all(type(a) is bytes for a in command)
    except ProtocolError:
        pass


def decode(data: bytes, protocol: int = 2) -> object:
    reader = hiredis.Reader()
    reader.feed(data)
    return reader.gets()


def test_replies_encode_as_resp2() -> None:
    enc = encoder_for(2)
    assert enc(Simple("OK")) == b"+OK\r\n"
    assert enc(ErrorReply("ERR bad\r\nthing")) == b"-ERR bad  thing\r\n"
    assert enc(b"v") == b"$1\r\nv\r\n"
    assert enc("é") == b"$2\r\n\xc3\xa9\r\n"
    assert enc(None) == b"$-1\r\n"
    assert enc(NULL_ARRAY) == b"*-1\r\n"
    assert enc(True) == b":1\r\n"
    assert enc(1.5) == b"$3\r\n1.5\r\n"
    assert enc({"a": 1}) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert enc(Push([b"message", b"c", b"m"])) == enc([b"message", b"c", b"m"])
    assert enc(Replies([1, 2])) == b":1\r\n:2\r\n"
    assert enc(Verbatim("x")) == b"$1\r\nx\r\n"
    assert decode(enc([1, [b"a", None], b""])) == [1, [b"a", None], b""]


def test_replies_encode_as_resp3() -> None:
    enc = encoder_for(3)
    assert enc(None) == b"_\r\n"
    assert enc(NULL_ARRAY) == b"_\r\n"
    assert enc(False) == b"#f\r\n"
    assert enc(2.0) == b",2\r\n"
    assert enc({"a": 1}) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert enc(Push([b"x"])) == b">1\r\n$1\r\nx\r\n"
    assert enc({1, 2}).startswith(b"~2\r\n")
    assert enc(Verbatim("hi")) == b"=6\r\ntxt:hi\r\n"
    assert decode(enc({"a": [1, None]})) == {b"a": [1, None]}
