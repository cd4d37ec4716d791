"""The hot paths of the RESP front end, in process (no sockets, no server).

A :class:`RespConnection` gets bytes through ``data_received`` and writes
into a fake transport; the tests check that the shortcuts — reads run straight
from the command table, ``SET``'s blind form, the coalescer committing in the
loop or handing off — answer exactly what the generic path answers, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest

import amber
from amber.database import Put
from amber.server.commands import REGISTRY, RuntimeConfig, Scope, ServerState, Session
from amber.server.commands.coalesce import Pending
from amber.server.context import ServerContext
from amber.server.resp.connection import RespConnection, RespServer


class FakeTransport:
    def __init__(self) -> None:
        self.data = bytearray()
        self.writes = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data
        self.writes += 1

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else None

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0


def pack(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


def replies(transport: FakeTransport) -> list[Any]:
    reader = hiredis.Reader()
    reader.feed(bytes(transport.data))
    out = []
    while (reply := reader.gets()) is not False:
        out.append(f"-{reply}" if isinstance(reply, hiredis.ReplyError) else reply)
    return out


@pytest.fixture
def state(tmp_path: Path) -> Iterator[ServerState]:
    db = amber.open(tmp_path / "db", durability="always", jobs=False)
    try:
        yield ServerState(ServerContext.for_database(db), RuntimeConfig({}))
    finally:
        db.close()


def connect(state: ServerState) -> tuple[RespConnection, FakeTransport]:
    connection = RespConnection(RespServer(state))
    transport = FakeTransport()
    connection.connection_made(transport)
    return connection, transport


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def test_a_pipeline_mixing_reads_writes_and_multi_answers_in_order(state: ServerState) -> None:
    async def main() -> list[Any]:
        connection, transport = connect(state)
        connection.data_received(
            pack("SET", "a", "1")
            + pack("GET", "a")  # must see the SET before it
            + pack("GET", "missing")
            + pack("get", "a")  # lower case: the generic path
            + pack("GET")  # wrong arity
            + pack("MULTI")
            + pack("GET", "a")
            + pack("SET", "b", "2")
            + pack("EXEC")
            + pack("MGET", "a", "b")
            + pack("SET", "t:k", "v", "EX", "100")
            + pack("TTL", "t:k")
        )
        await settle()
        return replies(transport)

    assert asyncio.run(main()) == [
        b"OK",
        b"1",
        None,
        b"1",
        "-ERR wrong number of arguments for 'get' command",
        b"OK",
        b"QUEUED",
        b"QUEUED",
        [b"1", b"OK"],
        [b"1", b"2"],
        b"OK",
        100,
    ]


def test_blind_writes_of_a_turn_share_one_commit_and_reply_in_one_write(
    state: ServerState,
) -> None:
    async def main() -> None:
        connections = [connect(state) for _ in range(5)]
        revision = state.db.revision
        for i, (connection, _) in enumerate(connections):
            connection.data_received(pack("SET", f"k{i}", "x") + pack("SET", f"j{i}", "y"))
        await settle()
        assert state.db.revision == revision + 1
        for _, transport in connections:
            assert replies(transport) == [b"OK", b"OK"]
            assert transport.writes == 1

    asyncio.run(main())


def test_slow_commits_go_through_the_flusher_and_still_answer(state: ServerState) -> None:
    state.coalescer.commit_seconds = 1.0  # as if the disk took a second per flush

    async def main() -> list[Any]:
        connection, transport = connect(state)
        connection.data_received(pack("SET", "a", "1") + pack("GET", "a") + pack("DEL", "a"))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(replies(transport)) == 3:
                break
        return replies(transport)

    assert asyncio.run(main()) == [b"OK", b"1", 1]


@pytest.mark.parametrize(
    "args",
    [
        [b"SET", b"k", b"v"],
        [b"SET", b"users:42:profile", "é".encode()],
        [b"SET", b"k", b"v", b"NX"],
        [b"SET", b"k", b"x" * 20_000],
        [b"SET", b"bad table!:k", b"v"],
        [b"SET", b"\xff", b"v"],
        [b"SET", b"k", b"\xff"],
    ],
)
def test_the_blind_form_of_set_does_what_the_handler_does(
    state: ServerState, args: list[bytes]
) -> None:
    command = REGISTRY.get(b"SET")
    assert command is not None and command.blind is not None
    session = Session(state)
    scope = Scope(state.db)
    try:
        reply = command.handler(session, scope, args)
        expected: Any = ([*scope.ops], reply)
    except Exception as exc:
        expected = type(exc)
    try:
        got: Any = command.blind(session, args)
    except Exception as exc:
        got = type(exc)
    if got is None:  # not a blind call (options, a long value): the handler runs
        assert len(args) > 3 or len(args[2]) > 16 * 1024
    else:
        assert got == expected
        if isinstance(got, tuple):
            assert all(type(op) is Put for op in got[0])


def test_fast_reads_only_for_a_session_in_a_plain_state(state: ServerState) -> None:
    async def main() -> None:
        session = Session(state)
        assert session.fast_reads() is not None
        assert b"GET" in (session.fast_reads() or {})
        assert b"SET" not in (session.fast_reads() or {})
        session.execute([b"MULTI"])
        assert session.fast_reads() is None
        session.execute([b"DISCARD"])
        assert session.fast_reads() is not None
        pending = session.execute([b"SET", b"a", b"1"])
        assert type(pending) is Pending
        assert session.fast_reads() is None  # a write in flight: reads must wait
        await settle()
        assert session.fast_reads() is not None
        session.execute([b"SUBSCRIBE", b"ch"])
        assert session.fast_reads() is None
        resp3 = Session(state)
        resp3.execute([b"HELLO", b"3"])
        resp3.execute([b"SUBSCRIBE", b"ch"])
        assert resp3.fast_reads() is not None  # RESP3 may read while subscribed
        state.config.set("requirepass", "secret")
        assert Session(state).fast_reads() is None

    asyncio.run(main())


def test_blind_writes_skip_execute_only_for_a_session_in_a_plain_state(
    state: ServerState,
) -> None:
    async def main() -> None:
        session = Session(state)
        blind = session.fast_blind_writes()
        assert blind is not None
        assert b"SET" in blind and b"GET" not in blind
        session.execute([b"MULTI"])
        assert session.fast_blind_writes() is None
        session.execute([b"DISCARD"])
        pending = session.execute([b"SET", b"a", b"1"])
        assert type(pending) is Pending
        assert session.fast_blind_writes() is not None  # blind writes may queue behind it
        await settle()
        session.execute([b"SUBSCRIBE", b"ch"])
        assert session.fast_blind_writes() is None  # RESP2 subscribed mode
        state.config.set("requirepass", "secret")
        assert Session(state).fast_blind_writes() is None

    asyncio.run(main())


def test_the_blind_write_shortcut_answers_what_execute_answers(state: ServerState) -> None:
    """Errors, options and other contexts leave the shortcut for the generic path."""

    async def main() -> list[Any]:
        connection, transport = connect(state)
        connection.data_received(
            pack("SET", "a", "1")
            + pack("SET", "a")  # wrong arity
            + pack("SET", b"\xff", "x")  # not UTF-8: the blind form raises
            + pack("SET", "bad table!:k", "x")  # invalid table name
            + pack("SET", "b", "2", "NX")  # options: no blind form
            + pack("DEL", "b", "missing")
            + pack("GET", "a")
            + pack("MULTI")
            + pack("SET", "c", "3")  # queued, not submitted
            + pack("EXEC")
            + pack("MGET", "a", "b", "c")
        )
        await settle()
        return replies(transport)

    answers = asyncio.run(main())
    assert answers[:2] == [b"OK", "-ERR wrong number of arguments for 'set' command"]
    assert answers[2].startswith("-ERR") and "UTF-8" in answers[2]
    assert answers[3].startswith("-ERR") and "table name" in answers[3]
    assert answers[4:] == [b"OK", 1, b"1", b"OK", b"QUEUED", [b"OK"], [b"1", None, b"3"]]
    # As execute counts: the ones that ran, failed ones too (not the arity error
    # nor the queued one, which EXEC ran).
    assert state.stats.commands["SET"][:2] == [4, 2]


def test_unauthenticated_blind_writes_are_refused(state: ServerState) -> None:
    state.config.set("requirepass", "secret")

    async def main() -> list[Any]:
        connection, transport = connect(state)
        connection.data_received(
            pack("SET", "a", "1") + pack("AUTH", "secret") + pack("SET", "a", "2")
        )
        await settle()
        return replies(transport)

    assert asyncio.run(main()) == ["-NOAUTH Authentication required.", b"OK", b"OK"]
    assert state.db.table("default").get("a") == "2"


def test_fast_reads_are_counted(state: ServerState) -> None:
    async def main() -> None:
        connection, transport = connect(state)
        calls = state.stats.commands.get("GET", [0])[0]
        connection.data_received(pack("GET", "a") * 7 + pack("DBSIZE"))
        await settle()
        assert len(replies(transport)) == 8
        assert state.stats.commands["GET"][0] == calls + 7
        assert state.stats.commands["DBSIZE"][0] == 1
        assert connection.session is not None
        assert connection.session.last_command == "DBSIZE"

    asyncio.run(main())


def test_a_run_of_one_read_is_counted_in_one_go(state: ServerState) -> None:
    async def main() -> None:
        connection, transport = connect(state)
        connection.data_received(pack("GET", "a") * 5)
        await settle()
        assert replies(transport) == [None] * 5
        assert state.stats.commands["GET"][0] == 5

    asyncio.run(main())


def test_get_reads_through_remembered_handles_and_sees_drops_and_close(
    state: ServerState,
) -> None:
    async def main() -> None:
        connection, transport = connect(state)
        connection.data_received(pack("SET", "t:k", "v") + pack("SET", "k", "w"))
        await settle()
        connection.data_received(pack("GET", "t:k") + pack("GET", "k") + pack(b"GET", b"\xff"))
        await settle()
        state.db.drop_table("t")  # the remembered handle is cleared in place
        connection.data_received(pack("GET", "t:k"))
        await settle()
        assert replies(transport) == [
            b"OK",
            b"OK",
            b"v",
            b"w",
            "-ERR key b'\\xff' is not valid UTF-8",
            None,
        ]

    asyncio.run(main())


def test_the_coalescer_commits_checked_ops_without_entries_unless_asked(
    state: ServerState,
) -> None:
    result = state.db.commit_checked([Put("t", "k", "v")])
    assert result.entries == [] and result.revision == state.db.revision
    result = state.db.commit_checked([Put("t", "k", "w")], entries=True)
    assert result.entries[0] is not None and result.entries[0].version == 2
    assert state.db.table("t").get("k") == "w"
