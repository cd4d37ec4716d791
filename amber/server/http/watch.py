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
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ...errors import AmberError, Closed, InvalidArgument
from ...watch import EventBatch, Watch
from .api import HttpApi
from .bodies import dumps
from .problems import problem_body, problem_responses

__all__ = ["encode_batch", "watch_router"]

EVENT_STREAM = "text/event-stream"
#: Bytes a stream encodes before it lets other clients run (see ``_events``).
YIELD_BYTES = 256 * 1024


def encode_batch(batch: EventBatch) -> Iterator[bytes]:
    """One revision as SSE events, one piece per event (no events: a progress event)."""
    revision = batch.revision
    if not batch.events:
        yield f'event: progress\nid: {revision}\ndata: {{"revision":{revision}}}\n\n'.encode()
        return
    last = len(batch.events) - 1
    for index, event in enumerate(batch.events):
        data = dumps(
            {
                "revision": revision,
                "table": event.table,
                "key": event.key,
                "type": event.type,
                "value": event.value,
                "prev_value": event.prev_value,
                "diff": event.diff,
            }
        )
        head = f"id: {revision}\n" if index == last else ""
        yield f"{head}data: {data}\n\n".encode()


def encode_problem(exc: BaseException) -> bytes:
    """The stream's last event: what ended it."""
    _, body = problem_body(exc)
    return f"event: problem\ndata: {dumps(body)}\n\n".encode()


class _WatchResponse(StreamingResponse):
    """Closes its watch however the response ends (done, cancelled, never started)."""

    def __init__(self, api: HttpApi, watch: Watch[Any], content: AsyncIterator[bytes]) -> None:
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


async def _events(watch: Watch[Any], first: int) -> AsyncIterator[bytes]:
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
    yield f": watching from revision {first}\n\n".encode()
    unflushed = 0  # bytes encoded since the loop last had a turn
    try:
        async for batch in watch.batches():
            pending: list[bytes] = []
            for piece in encode_batch(batch):
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


def _resume_from(last_event_id: str | None, start: int | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return start
    text = last_event_id.strip()
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
            int | None,
            Query(alias="from", ge=1, le=2**63 - 1, description="Replay from this revision."),
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
        return _WatchResponse(api, stream, _events(stream, first))

    return router
