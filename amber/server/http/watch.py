"""``GET /v1/watch``: committed changes as Server-Sent Events, resumable.

Query: ``table`` (none: every table), ``key`` or ``prefix``, ``from`` (replay
from this revision; default: changes after the request), ``prev_value``
(default true), ``heartbeat`` (seconds of quiet before a progress event,
default 15). Argument errors answer a problem+json before the stream starts
(``400``; ``410 compacted`` with ``oldest_available`` when ``from`` is older
than the history kept).

The stream (``text/event-stream``)::

    : watching from revision 8

    data: {"revision":8,"table":"t","key":"a","type":"put","value":{…},"prev_value":null,"diff":{…}}

    id: 8
    data: {"revision":8,"table":"t","key":"b","type":"delete","value":null,…}

    event: progress
    id: 12
    data: {"revision":12}

- A change is an unnamed event (``onmessage``), its JSON carrying ``type``
  (``put``, ``merge``, ``delete``, ``expire``) and the RFC 7396 ``diff``.
- ``id`` is set on the **last** event of each revision only, and on progress
  events (every matching change up to that revision was sent), so the
  ``Last-Event-ID`` an ``EventSource`` sends when it reconnects always names a
  revision delivered whole: the stream resumes at the next one, with no gap
  and no duplicate. ``Last-Event-ID`` wins over ``from``.
- ``event: problem`` carries a problem document and ends the stream: a
  watcher that fell behind gets ``lagged`` with ``last_revision`` (reconnect to
  resume), a closing database ``closed``.

A slow client never slows writers: its watch queue overflows into ``lagged``.
When the server stops, open streams end (``close_streams``).

On a sharded node the stream covers every group (:mod:`amber.server.shard_watch`):
each change's JSON also has ``shard`` (its group), every ``id`` (and the
progress events' ``cursor``) is a shard cursor such as ``g1:121,g2:99`` — the
next revision per group — and ``from``/``Last-Event-ID`` take one to resume;
a ``lagged`` problem carries the ``cursor`` to resume from.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ...errors import AmberError, Closed, InvalidArgument
from ...watch import Event, EventBatch, Watch
from ..shard_watch import MergedWatch, ShardBatch, ShardLagged, Start, parse_start
from .api import HttpApi
from .bodies import dumps
from .problems import problem_body, problem_responses

__all__ = ["encode_batch", "watch_router"]

EVENT_STREAM = "text/event-stream"
#: Bytes a stream encodes before it lets other clients run (see ``_paced``).
YIELD_BYTES = 256 * 1024
#: ``from``: a revision (1 to 2**63-1, checked after) or a shard cursor.
#: (Shape only: limits are checked by ``parse_start``; bounded repeats would make
#: the regex too large to compile.)
_CURSOR_PATTERN = r"[^,:\s0-9][^,:\s]*:[0-9]+"
_FROM_PATTERN = rf"^([1-9][0-9]*|{_CURSOR_PATTERN}(,{_CURSOR_PATTERN})*)$"


def _event_data(revision: int, event: Event, shard: str | None = None) -> str:
    body = {
        "revision": revision,
        "table": event.table,
        "key": event.key,
        "type": event.type,
        "value": event.value,
        "prev_value": event.prev_value,
        "diff": event.diff,
    }
    if event.stamp is not None:  # an eventual table: who wrote it, and when (HLC)
        body["origin"] = event.origin
        body["hlc"] = event.hlc
    if shard is not None:
        body["shard"] = shard
    return dumps(body)


def encode_batch(batch: EventBatch) -> Iterator[bytes]:
    """One revision as SSE events, one piece per event (no events: a progress event)."""
    revision = batch.revision
    if not batch.events:
        yield f'event: progress\nid: {revision}\ndata: {{"revision":{revision}}}\n\n'.encode()
        return
    last = len(batch.events) - 1
    for index, event in enumerate(batch.events):
        head = f"id: {revision}\n" if index == last else ""
        yield f"{head}data: {_event_data(revision, event)}\n\n".encode()


def encode_shard_batch(batch: ShardBatch) -> Iterator[bytes]:
    """One group's revision as SSE events; the last one's ``id`` is the cursor after it."""
    last = len(batch.events) - 1
    for index, event in enumerate(batch.events):
        head = f"id: {batch.after}\n" if index == last else ""
        yield f"{head}data: {_event_data(batch.revision, event, batch.group)}\n\n".encode()


def encode_problem(exc: BaseException) -> bytes:
    """The stream's last event: what ended it."""
    _, body = problem_body(exc)
    if isinstance(exc, ShardLagged):
        body["cursor"] = exc.cursor
    return f"event: problem\ndata: {dumps(body)}\n\n".encode()


class _WatchResponse(StreamingResponse):
    """Closes its watch however the response ends (done, cancelled, never started)."""

    def __init__(
        self, api: HttpApi, watch: Watch[Any] | MergedWatch, content: AsyncIterator[bytes]
    ) -> None:
        super().__init__(
            content,
            media_type=EVENT_STREAM,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self.api = api
        self.watch = watch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.watch.close()
            self.api.streams.discard(self.watch)


async def _paced(head: str, batches: AsyncIterator[Iterator[bytes]]) -> AsyncIterator[bytes]:
    """The stream's bytes: each revision sent whole, in pieces of at most ~``YIELD_BYTES``.

    A replay from an old revision has every batch ready at once, and sending
    to a client that has gone returns at once too: without a pause this
    loop would encode the whole history for nobody while no other client is
    served (a dropped replay of wide documents held every front end for
    seconds). So it hands the loop a turn every ``YIELD_BYTES`` encoded, also
    inside one large revision (a transaction over many keys), which lets the
    response notice a disconnect and cancel the stream. A connected client
    that reads slowly is held by the transport's flow control, so at most
    about ``YIELD_BYTES`` wait per connection.
    """
    yield f": {head}\n\n".encode()
    unflushed = 0  # bytes encoded since the loop last had a turn
    try:
        async for pieces in batches:
            pending: list[bytes] = []
            for piece in pieces:
                pending.append(piece)
                unflushed += len(piece)
                if unflushed >= YIELD_BYTES:
                    yield b"".join(pending)
                    pending.clear()
                    unflushed = 0
                    await asyncio.sleep(0)
            if pending:
                yield b"".join(pending)
    except AmberError as exc:
        yield encode_problem(exc)


async def _events(watch: Watch[Any]) -> AsyncIterator[Iterator[bytes]]:
    async for batch in watch.batches():
        yield encode_batch(batch)


async def _shard_events(watch: MergedWatch, heartbeat: float) -> AsyncIterator[Iterator[bytes]]:
    """Each revision of every group; a progress event with the cursor after ``heartbeat`` idle."""
    while True:
        batch = await watch.next(heartbeat)
        if batch is not None:
            yield encode_shard_batch(batch)
        elif watch.closed:
            return
        else:
            cursor = watch.cursor()
            progress = dumps({"cursor": cursor})
            yield iter([f"event: progress\nid: {cursor}\ndata: {progress}\n\n".encode()])


def _resume_from(last_event_id: str | None, start: str | None) -> Start:
    if last_event_id is None or not last_event_id.strip():
        return None if start is None else parse_start(start)
    text = last_event_id.strip()
    if ":" in text:
        return parse_start(text)
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise InvalidArgument(
            f"Last-Event-ID must be a revision this stream sent, not {last_event_id[:40]!r}"
        )
    return int(text) + 1


def watch_router(api: HttpApi) -> APIRouter:
    """The watch route."""
    router = APIRouter(tags=["watch"])
    db = api.ctx.db

    @router.get(
        "/v1/watch",
        name="watch",
        summary="Stream committed changes as Server-Sent Events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "An event stream; see the module documentation.",
                "content": {EVENT_STREAM: {"schema": {"type": "string"}}},
            },
            **problem_responses(400, 410, 503),
        },
    )
    async def watch(
        *,
        table: Annotated[str | None, Query(description="Only this table.")] = None,
        key: Annotated[str | None, Query(description="Only this key.")] = None,
        prefix: Annotated[str | None, Query(description="Only keys with this prefix.")] = None,
        start: Annotated[
            str | None,
            Query(
                alias="from",
                pattern=_FROM_PATTERN,
                max_length=8192,
                description="Replay from this revision (sharded: or a shard cursor).",
            ),
        ] = None,
        prev_value: bool = True,
        heartbeat: Annotated[
            float, Query(ge=0.05, le=3600, allow_inf_nan=False, description="Idle seconds.")
        ] = 15.0,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        if api.stopping.is_set():
            raise Closed("the server is shutting down; reconnect to resume")
        start_revision = _resume_from(last_event_id, start)
        shards = api.ctx.merged_watches()
        if shards is not None:
            merged = shards.open(table, key, prefix, start=start_revision, prev_value=prev_value)
            api.streams.add(merged)
            events = _shard_events(merged, heartbeat)
            return _WatchResponse(api, merged, _paced(f"watching from {merged.cursor()}", events))
        if isinstance(start_revision, dict):
            raise InvalidArgument("a shard cursor needs a sharded node (--shard-map)")
        stream = db.watch(
            table,
            key,
            prefix=prefix,
            start_revision=start_revision,
            prev_value=prev_value,
            progress_interval=heartbeat,
        )
        api.streams.add(stream)
        first = start_revision if start_revision is not None else stream.revision + 1
        return _WatchResponse(
            api, stream, _paced(f"watching from revision {first}", _events(stream))
        )

    return router
