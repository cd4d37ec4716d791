# mypy: disable-error-code="no-untyped-call"
"""Talk to an ``amber serve`` over RESP with redis-py.

>>> client = amber.Client("redis://127.0.0.1:7379")        # doctest: +SKIP
>>> users = client.table("users")                           # doctest: +SKIP
>>> users.put("42", {"name": "ada"})                        # doctest: +SKIP
>>> for event in users.watch(prefix="4", start_revision=1): # doctest: +SKIP
...     print(event)

Keys on the wire are ``table:key``. Values are JSON documents: puts go
through ``AMBER.TXN`` (the exact revision, compare-and-set, and the TTL
cleared as in the embedded API), reads through ``JSON.GET``/``JSON.MGET``, so
a document round-trips exactly. Server errors come back as the
:mod:`amber.errors` types (``CONDITION`` → ``ConditionFailed`` …).

A watch keeps its own connection. It remembers the last revision it
delivered (and how many events of it), and when the connection drops it
reconnects with bounded retries and backoff and resumes from there, so the
iterator yields every event exactly once across server restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import redis
import redis.asyncio
import redis.asyncio.connection
import redis.connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import errors
from .database import Page
from .store.batch import Compare, Delete, Merge, Put
from .watch import Event

__all__ = [
    "AsyncClient",
    "AsyncClientTable",
    "AsyncClientWatch",
    "Client",
    "ClientTable",
    "ClientWatch",
]

DEFAULT_URL = "redis://127.0.0.1:7379"
_SCAN_COUNT = 500
_DROPPED = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


# -- encoding -----------------------------------------------------------------------


def _wire_key(table: str, key: str) -> str:
    return f"{table}:{key}"


def _scan_patterns(table: str, prefix: str | None) -> list[str]:
    """SCAN MATCH patterns for a table's keys under ``prefix``.

    The server shows keys of the ``default`` table that have no colon bare
    (``k``, not ``default:k``), so that table needs a second pattern.
    """
    patterns = [_glob_escape(_wire_key(table, prefix or "")) + "*"]
    if table == "default":
        patterns.append(_glob_escape(prefix or "") + "*")
    return patterns


def _keys_of(table: str, found: list[bytes | str]) -> list[str]:
    return [key for name, key in map(_split, found) if name == table]


def _enough(patterns: list[str], keys: set[str], limit: int | None) -> bool:
    """Stop early only for one pattern: the server scans it in key order."""
    return len(patterns) == 1 and limit is not None and len(keys) > limit


def _split(raw: bytes | str) -> tuple[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    table, sep, key = text.partition(":")
    return (table, key) if sep else ("default", text)


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidValue(f"value is not JSON-compatible: {exc}") from None


def _load(raw: bytes | str | None) -> Any:
    return None if raw is None else json.loads(raw)


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise errors.InvalidArgument(f"ttl must be a positive number of seconds, not {ttl!r}")
    return max(1, int(-(-ttl * 1000 // 1)))


def _txn_spec(compares: Iterable[Compare], ops: Iterable[Put | Merge | Delete]) -> str:
    spec: dict[str, list[Any]] = {"compares": [], "ops": []}
    for c in compares:
        spec["compares"].append([_wire_key(c.table, c.key), c.target, c.op, c.operand])
    for op in ops:
        if isinstance(op, Put | Merge):
            if op.ttl_ms is not None and (
                isinstance(op.ttl_ms, bool) or not isinstance(op.ttl_ms, int) or op.ttl_ms <= 0
            ):
                raise errors.InvalidArgument(f"ttl_ms must be a positive int in {op!r}")
            if isinstance(op, Put) and op.keep_ttl:
                raise errors.InvalidArgument("a client transaction cannot keep_ttl")
            if isinstance(op, Put) and op.expires_at_ms is not None:
                raise errors.InvalidArgument(
                    "a client transaction takes ttl_ms, not expires_at_ms (use EXPIREAT over RESP)"
                )
            body = op.value if isinstance(op, Put) else op.patch
            wire = ["put" if isinstance(op, Put) else "merge", _wire_key(op.table, op.key), body]
            if op.ttl_ms is not None:
                wire.append({"ttl_ms": op.ttl_ms})
            spec["ops"].append(wire)
        elif isinstance(op, Delete):
            spec["ops"].append(["delete", _wire_key(op.table, op.key)])
        else:
            raise errors.InvalidArgument(
                f"a client transaction takes Put, Merge, Delete, not {op!r}"
            )
    return _dump(spec)


def _put_spec(table: str, key: str, value: Any, if_absent: bool, ttl_ms: int | None) -> str:
    """One AMBER.TXN: the TTL rides in the op, so the write is one event."""
    compares = [Compare(table, key, "exists", "=", False)] if if_absent else []
    return _txn_spec(compares, [Put(table, key, value, ttl_ms)])


_PREFIXED: dict[str, type[errors.AmberError]] = {
    "CONDITION": errors.ConditionFailed,
    "CLOSED": errors.Closed,
    "LOCKED": errors.Locked,
    "IOERR": errors.StorageFailed,
    "TRYAGAIN": errors.Unavailable,
    "UNKNOWN": errors.UnknownOutcome,
}


def amber_error(exc: ResponseError) -> errors.AmberError:
    """The :mod:`amber.errors` exception for a server's error reply."""
    text = str(exc)
    code, _, message = text.partition(" ")
    if code in _PREFIXED:
        return _PREFIXED[code](message)
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    if code == "COMPACTED":
        return errors.Compacted(*[*numbers, 0, 0][:2])
    if code == "LAGGED":
        return errors.Lagged([*numbers, 0][0])
    if code == "CORRUPTED":
        return errors.Corrupted(message)
    return errors.InvalidArgument(text)


def _event(message: list[Any]) -> Event:
    """An :class:`Event` from ``["amber.watch", spec, rev, key, type, value, diff, prev]``."""
    table, key = _split(message[3])
    prev = _load(message[7]) if len(message) > 7 else None
    return Event(int(message[2]), table, key, message[4].decode(), _load(message[5]), prev)


def _watch_error(message: list[Any]) -> errors.AmberError:
    text = message[2].decode("utf-8", "replace") if len(message) > 2 else "watch failed"
    name, _, detail = text.partition(": ")
    numbers = [int(n) for n in re.findall(r"\d+", detail)]
    if name == "Lagged":
        return errors.Lagged([*numbers, 0][0])
    if name == "Compacted":
        return errors.Compacted(*[*numbers, 0, 0][:2])
    if name == "Closed":
        return errors.Closed(detail)
    return errors.AmberError(text)


@dataclass
class _Cursor:
    """Where a watch is: the last revision delivered and how many of its events."""

    spec: str
    next_revision: int | None
    last: int = 0
    seen: int = 0

    def resume_from(self) -> int | None:
        return self.last if self.last else self.next_revision

    def accept(self, event: Event) -> bool:
        """Whether ``event`` is new (replayed events of ``last`` are skipped once)."""
        if event.revision < self.last:
            return False
        if event.revision == self.last:
            if self.skip > 0:
                self.skip -= 1
                return False
            self.seen += 1
            return True
        self.last, self.seen, self.skip = event.revision, 1, 0
        return True

    skip: int = 0

    def reconnecting(self) -> None:
        self.skip = self.seen

    def command(self) -> list[Any]:
        args: list[Any] = ["AMBER.WATCH", self.spec]
        start = self.resume_from()
        if start is not None:
            args += ["FROM", start]
        return [*args, "PREV"]


def _spec(table: str, key: str | None, prefix: str | None) -> str:
    if key is not None and prefix is not None:
        raise errors.InvalidArgument("watch takes a key or a prefix, not both")
    if key is not None:
        return _wire_key(table, key)
    return _wire_key(table, (prefix or "") + "*")


# -- what the sync and asyncio clients share ----------------------------------------

_T = TypeVar("_T")
_C = TypeVar("_C")
_K = TypeVar("_K")

_Command = tuple[Any, ...]


@dataclass(frozen=True)
class _Multi:
    """Commands to run in one MULTI/EXEC; the reply is the list of their replies."""

    commands: tuple[_Command, ...]

    def queue(self, pipe: Any) -> Any:
        """``pipe`` (a redis-py pipeline) with the commands queued."""
        for args in self.commands:
            pipe.execute_command(*args)
        return pipe


#: A command's steps: it yields the requests to send, is sent each reply, and
#: returns its result. The clients drive them, each with its own I/O.
_Steps = Generator[_Command | _Multi, Any, _T]


@contextlib.contextmanager
def _server_errors() -> Iterator[None]:
    """Raise error replies as :mod:`amber.errors` types."""
    try:
        yield
    except ResponseError as exc:
        raise amber_error(exc) from None


def _options(password: str | None, socket_timeout: float) -> dict[str, Any]:
    """redis-py's connection options for a client."""
    kwargs: dict[str, Any] = {"socket_timeout": socket_timeout}
    if password is not None:
        kwargs["password"] = password
    return kwargs


def _unpooled(pool: Any) -> Any:
    """A new connection of ``pool``'s kind, outside it, without a read timeout (for a watch)."""
    return pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})


def _revision() -> _Steps[int]:
    return int((yield ("AMBER.REV",)))


def _txn(spec: str) -> _Steps[int]:
    return int((yield ("AMBER.TXN", spec)))


class _TableBase(Generic[_C]):
    """What :class:`ClientTable` and :class:`AsyncClientTable` share: their steps."""

    def __init__(self, client: _C, name: str) -> None:
        self.client = client
        self.name = name

    def _k(self, key: str) -> str:
        return _wire_key(self.name, key)

    def _get(self, key: str, default: Any) -> _Steps[Any]:
        raw = yield ("JSON.GET", self._k(key))
        return default if raw is None else _load(raw)

    def _put(self, key: str, value: Any, ttl: float | None, if_absent: bool) -> _Steps[int]:
        return (yield from _txn(_put_spec(self.name, key, value, if_absent, _ttl_ms(ttl))))

    def _merge(self, key: str, patch: Any) -> _Steps[Any]:
        merge = ("JSON.MERGE", self._k(key), "$", _dump(patch))
        _, raw = yield _Multi((merge, ("JSON.GET", self._k(key))))
        return _load(raw)

    def _delete(self, key: str) -> _Steps[bool]:
        return int((yield ("DEL", self._k(key)))) > 0

    def _scan(self, prefix: str | None, limit: int | None) -> _Steps[Page]:
        if limit is not None and limit < 0:
            raise errors.InvalidQuery("limit must be >= 0")
        revision = yield from _revision()
        patterns = _scan_patterns(self.name, prefix)
        found_keys: set[str] = set()
        for pattern in patterns:
            cursor: int | bytes = 0
            while True:
                cursor, found = yield ("SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT)
                found_keys.update(_keys_of(self.name, found))
                if int(cursor) == 0 or _enough(patterns, found_keys, limit):
                    break
        keys = sorted(found_keys)[: None if limit is None else limit + 1]
        raws = (yield ("JSON.MGET", *map(self._k, keys), ".")) if keys else []
        return _page(keys, raws, limit, revision)

    def _cursor(
        self, key: str | None, prefix: str | None, start_revision: int | None
    ) -> _Steps[_Cursor]:
        start = start_revision if start_revision is not None else (yield from _revision()) + 1
        return _Cursor(_spec(self.name, key, prefix), start)


def _page(keys: list[str], raws: list[Any], limit: int | None, revision: int) -> Page:
    items = [(k, _load(raw)) for k, raw in zip(keys, raws, strict=False) if raw is not None]
    more = limit is not None and len(items) > limit
    return Page(items[:limit] if limit is not None else items, more, revision)


class _Reconnect(Exception):
    """The server ended a watch's stream; reconnecting resumes it (Lagged, Closed)."""


#: What a watch survives by reconnecting.
_RECONNECT = (*_DROPPED, _Reconnect)


def _time_left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class _WatchBase(Generic[_C, _K]):
    """What :class:`ClientWatch` and :class:`AsyncClientWatch` share: the cursor,
    the retry schedule, and what the server's messages mean."""

    def __init__(
        self, client: _C, cursor: _Cursor, *, retries: int = 8, backoff: float = 0.1
    ) -> None:
        self.client = client
        self.cursor = cursor
        self.retries = retries
        self.backoff = backoff
        self._conn: _K | None = None
        self._closed = False

    @property
    def last_revision(self) -> int:
        return self.cursor.last

    def _check_open(self) -> None:
        if self._closed:
            raise errors.Closed("the watch was closed")

    def _delays(self) -> Iterator[float]:
        """The waits after each failed connect but the last: doubling, at most 2 s."""
        delay = self.backoff
        for _ in range(self.retries):
            yield delay
            delay = min(delay * 2, 2.0)

    def _accept(self, message: Any) -> Event | None:
        """The new event in a message from the server, if it holds one.

        Raises the server's errors, and :class:`_Reconnect` for those a
        reconnect recovers from.
        """
        if isinstance(message, ResponseError):
            raise amber_error(message)
        if not isinstance(message, list) or not message:
            return None
        if message[0] == b"amber.watch" and len(message) >= 7:
            event = _event(message)
            return event if self.cursor.accept(event) else None
        if message[0] == b"amber.watch.error":
            error = _watch_error(message)
            if isinstance(error, errors.Lagged | errors.Closed):
                raise _Reconnect
            raise error
        return None


# -- sync ---------------------------------------------------------------------------


class Client:
    """A connection pool to one Amber server."""

    def __init__(
        self, url: str = DEFAULT_URL, password: str | None = None, *, socket_timeout: float = 30.0
    ) -> None:
        self.url = url
        self.redis: redis.Redis = redis.Redis.from_url(url, **_options(password, socket_timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.redis.close()

    def table(self, name: str) -> ClientTable:
        return ClientTable(self, name)

    def call(self, *args: Any) -> Any:
        """Run one command; error replies raise :mod:`amber.errors` types."""
        with _server_errors():
            return self.redis.execute_command(*args)

    def _run(self, steps: _Steps[_T]) -> _T:
        """Send each request ``steps`` yields, and return what it returns."""
        try:
            request = next(steps)
            while True:
                request = steps.send(self._send(request))
        except StopIteration as done:
            result: _T = done.value
            return result

    def _send(self, request: _Command | _Multi) -> Any:
        if isinstance(request, _Multi):
            with _server_errors():
                return request.queue(self.redis.pipeline(transaction=True)).execute()
        return self.call(*request)

    def revision(self) -> int:
        """The server's database revision."""
        return self._run(_revision())

    def info(self) -> dict[str, Any]:
        """INFO, parsed by redis-py."""
        result: dict[str, Any] = self.redis.info()
        return result

    def txn(self, compares: Iterable[Compare], ops: Iterable[Put | Merge | Delete]) -> int:
        """Apply ``ops`` all-or-nothing if every compare holds; returns the revision."""
        return self._run(_txn(_txn_spec(compares, ops)))

    def _watch_connection(self) -> redis.connection.Connection:
        connection: redis.connection.Connection = _unpooled(self.redis.connection_pool)
        return connection


class ClientTable(_TableBase[Client]):
    """One table of a server, with the embedded ``Table``'s methods."""

    def __repr__(self) -> str:
        return f"<ClientTable {self.name!r} at {self.client.url}>"

    def get(self, key: str, default: Any = None) -> Any:
        return self.client._run(self._get(key, default))

    def put(
        self, key: str, value: Any, *, ttl: float | None = None, if_absent: bool = False
    ) -> int:
        """Set the key; returns the revision (``ConditionFailed`` if ``if_absent`` fails)."""
        return self.client._run(self._put(key, value, ttl, if_absent))

    def merge(self, key: str, patch: Any) -> Any:
        """RFC 7396 merge ``patch`` into the key (created if absent); returns the new value."""
        return self.client._run(self._merge(key, patch))

    def delete(self, key: str) -> bool:
        """Remove the key; returns whether it existed."""
        return self.client._run(self._delete(key))

    def scan(self, prefix: str | None = None, limit: int | None = None) -> Page:
        """Items under ``prefix`` in key order (``Page.more`` if ``limit`` cut it).

        ``Page.revision`` is read before the scan: a watch from ``revision + 1``
        misses nothing (it may repeat changes the page already shows).
        """
        return self.client._run(self._scan(prefix, limit))

    def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int | None = None,
    ) -> ClientWatch:
        """Changes to ``key``, to keys under ``prefix``, or to the whole table.

        Without ``start_revision`` it starts after the current revision.
        """
        return ClientWatch(self.client, self.client._run(self._cursor(key, prefix, start_revision)))


class ClientWatch(_WatchBase[Client, redis.connection.Connection]):
    """An iterator of :class:`Event` that survives dropped connections."""

    def __enter__(self) -> ClientWatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        event = self.get()
        assert event is not None
        return event

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None

    def _open(self) -> redis.connection.Connection:
        conn = self.client._watch_connection()
        conn.connect()
        conn.send_command(*self.cursor.command())
        reply = conn.read_response(push_request=True)
        if isinstance(reply, ResponseError):
            conn.disconnect()
            raise amber_error(reply)
        return conn

    def _connect(self) -> redis.connection.Connection:
        for delay in self._delays():
            try:
                return self._open()
            except _DROPPED:
                time.sleep(delay)
        return self._open()

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None if ``timeout`` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_open()
            if self._conn is None:
                self._conn = self._connect()
            conn = self._conn
            try:
                left = _time_left(deadline)
                if left is not None and not conn.can_read(timeout=left):
                    return None
                event = self._accept(conn.read_response(push_request=True))
            except _RECONNECT:
                self._drop()
                continue
            if event is not None:
                return event

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None
        self.cursor.reconnecting()


# -- asyncio ------------------------------------------------------------------------


class AsyncClient:
    """:class:`Client` for asyncio (``redis.asyncio``)."""

    def __init__(
        self, url: str = DEFAULT_URL, password: str | None = None, *, socket_timeout: float = 30.0
    ) -> None:
        self.url = url
        self.redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url, **_options(password, socket_timeout)
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.redis.aclose()

    def table(self, name: str) -> AsyncClientTable:
        return AsyncClientTable(self, name)

    async def call(self, *args: Any) -> Any:
        with _server_errors():
            return await self.redis.execute_command(*args)

    async def _run(self, steps: _Steps[_T]) -> _T:
        """:meth:`Client._run`, awaiting each reply."""
        try:
            request = next(steps)
            while True:
                request = steps.send(await self._send(request))
        except StopIteration as done:
            result: _T = done.value
            return result

    async def _send(self, request: _Command | _Multi) -> Any:
        if isinstance(request, _Multi):
            with _server_errors():
                return await request.queue(self.redis.pipeline(transaction=True)).execute()
        return await self.call(*request)

    async def revision(self) -> int:
        return await self._run(_revision())

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.redis.info()
        return result

    async def txn(self, compares: Iterable[Compare], ops: Iterable[Put | Merge | Delete]) -> int:
        return await self._run(_txn(_txn_spec(compares, ops)))

    def _watch_connection(self) -> redis.asyncio.connection.AbstractConnection:
        connection: redis.asyncio.connection.AbstractConnection = _unpooled(
            self.redis.connection_pool
        )
        return connection


class AsyncClientTable(_TableBase[AsyncClient]):
    """:class:`ClientTable` for asyncio."""

    async def get(self, key: str, default: Any = None) -> Any:
        return await self.client._run(self._get(key, default))

    async def put(
        self, key: str, value: Any, *, ttl: float | None = None, if_absent: bool = False
    ) -> int:
        return await self.client._run(self._put(key, value, ttl, if_absent))

    async def merge(self, key: str, patch: Any) -> Any:
        return await self.client._run(self._merge(key, patch))

    async def delete(self, key: str) -> bool:
        return await self.client._run(self._delete(key))

    async def scan(self, prefix: str | None = None, limit: int | None = None) -> Page:
        return await self.client._run(self._scan(prefix, limit))

    async def watch(
        self,
        key: str | None = None,
        *,
        prefix: str | None = None,
        start_revision: int | None = None,
    ) -> AsyncClientWatch:
        cursor = await self.client._run(self._cursor(key, prefix, start_revision))
        return AsyncClientWatch(self.client, cursor)


class AsyncClientWatch(_WatchBase[AsyncClient, redis.asyncio.connection.AbstractConnection]):
    """:class:`ClientWatch` for asyncio: ``async for event in watch``."""

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        assert event is not None
        return event

    async def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            await self._conn.disconnect()
            self._conn = None

    async def _open(self) -> redis.asyncio.connection.AbstractConnection:
        conn = self.client._watch_connection()
        await conn.connect()
        await conn.send_command(*self.cursor.command())
        reply = await conn.read_response(push_request=True)
        if isinstance(reply, ResponseError):
            await conn.disconnect()
            raise amber_error(reply)
        return conn

    async def _connect(self) -> redis.asyncio.connection.AbstractConnection:
        for delay in self._delays():
            try:
                return await self._open()
            except _DROPPED:
                await asyncio.sleep(delay)
        return await self._open()

    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None if ``timeout`` seconds pass without one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_open()
            if self._conn is None:
                self._conn = await self._connect()
            conn = self._conn
            try:
                left = _time_left(deadline)
                message = await asyncio.wait_for(conn.read_response(push_request=True), left)
                event = self._accept(message)
            except TimeoutError:
                await self._drop()  # a cancelled read leaves the stream mid-reply
                return None
            except _RECONNECT:
                await self._drop()
                continue
            if event is not None:
                return event

    async def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*_DROPPED):
                await self._conn.disconnect()
            self._conn = None
        self.cursor.reconnecting()
