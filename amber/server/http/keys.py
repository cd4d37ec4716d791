"""``/v1/tables/{table}/keys/{key}``: one document, read and written whole or patched.

- ``GET`` — the document as JSON; ``ETag`` (its ``mod_revision``),
  ``Amber-Version``, ``Amber-Create-Revision``, ``Amber-Expires-At`` (Unix
  ms, with a TTL). ``If-None-Match`` → ``304``, ``If-Match`` → ``412``.
  ``404`` when absent.
- ``PUT`` (``application/json``) — replace; ``?ttl=`` seconds, ``?keep_ttl=``.
  ``201`` when it created the key, else ``200``; the body is the key's new
  metadata (``revision``, ``version``, ``create_revision``, ``expires_at_ms``).
- ``PATCH`` (``application/merge-patch+json``, RFC 7396) — merge, creating
  the key if absent (``201``); the body is the merged document.
- ``DELETE`` — ``204``, or ``404`` when absent.

Writes take ``If-Match`` / ``If-None-Match`` (:mod:`.conditions`) as
compare-and-set, answer only once durable, and never block the event loop.
"""

from __future__ import annotations

import math
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.convertors import PathConvertor, register_url_convertor
from starlette.responses import Response

from ...database import Delete, Entry, Merge, Put
from ...errors import InvalidArgument, NotFound
from ...model import check_key, check_table
from .api import Consistency, HttpApi
from .bodies import JSON, MERGE_PATCH_JSON, json_response, read_json
from .conditions import check_read, etag, parse_entity_tags, write_compares
from .problems import problem_responses

__all__ = ["KEY_PATH", "entry_headers", "entry_meta", "key_router", "ttl_ms"]


class _KeyConvertor(PathConvertor):
    """A key is the rest of the path, slashes and line breaks included.

    Starlette's ``path`` pattern is ``.*``, which stops at a newline, and a
    key may hold one (every UTF-8 string is a key); an empty key is matched
    too, so it answers ``400 invalid-name`` rather than an unrouted ``404``.
    """

    regex = r"[\s\S]*"


register_url_convertor("amber_key", _KeyConvertor())

KEY_PATH = "/v1/tables/{table}/keys/{key:amber_key}"

#: Longest TTL accepted, in seconds (~317 years): keeps expiry times in range.
MAX_TTL = 1e10

#: The conditional headers, read straight from the request (FastAPI's per-request
#: parameter machinery cost more than the rest of a GET) and documented here.
_CONDITIONS: list[dict[str, Any]] = [
    {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": 'Compare-and-set: `"<revision>"` (the ETag) or `*` (the key exists).',
    },
    {
        "name": "If-None-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": '`*`: only if the key is absent; `"<revision>"`: only if not at it.',
    },
]
Ttl = Annotated[
    float | None,
    Query(gt=0, le=MAX_TTL, allow_inf_nan=False, description="Expire the key after seconds."),
]


def _body(media_type: str, description: str) -> dict[str, Any]:
    return {
        "parameters": _CONDITIONS,
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media_type: {"schema": {}}},
        },
    }


def ttl_ms(ttl: float | None) -> int | None:
    """A TTL in seconds as whole milliseconds (at least 1)."""
    return None if ttl is None else max(1, math.ceil(ttl * 1000))


def entry_meta(table: str, entry: Entry) -> dict[str, Any]:
    """A key's metadata as JSON."""
    return {
        "table": table,
        "key": entry.key,
        "revision": entry.mod_revision,
        "create_revision": entry.create_revision,
        "version": entry.version,
        "expires_at_ms": entry.expires_at_ms,
    }


def entry_headers(entry: Entry) -> dict[str, str]:
    """``ETag`` and the other revision headers of a key."""
    headers = {
        "ETag": etag(entry.mod_revision),
        "Amber-Version": str(entry.version),
        "Amber-Create-Revision": str(entry.create_revision),
    }
    if entry.expires_at_ms is not None:
        headers["Amber-Expires-At"] = str(entry.expires_at_ms)
    return headers


def key_router(api: HttpApi) -> APIRouter:
    """The routes on single keys."""
    router = APIRouter(tags=["keys"])
    db = api.ctx.db
    limits = db.config.limits

    def names(request: Request, table: str, key: str) -> tuple[str, str]:
        """Checked names of a key this node serves (else ``Misrouted``: 307, 421 or 503)."""
        table, key = check_table(table, limits), check_key(key, limits)
        api.route(table, key, request.url.path, request.url.query)
        return table, key

    @router.get(
        KEY_PATH,
        name="get_key",
        summary="Read a document",
        openapi_extra={"parameters": _CONDITIONS},
        response_model=None,
        responses={
            200: {"content": {JSON: {"schema": {}}}, "description": "The document."},
            304: {"description": "Not modified (If-None-Match matched)."},
            **problem_responses(400, 404, 412, 503),
        },
    )
    async def get_key(
        request: Request, table: str, key: str, consistency: Consistency = "linearizable"
    ) -> Response:
        table, key = names(request, table, key)
        await api.read_point(consistency, table)
        handle = api.existing(table)
        entry = None if handle is None else handle.entry(key)
        # Again after the read: had the slot frozen or moved meanwhile (the
        # barrier and the read are not atomic with the first check), this
        # answer could be stale; a check after it proves it is not.
        api.route(table, key, request.url.path, request.url.query)
        headers = request.headers
        match = parse_entity_tags(headers.get("if-match"), "If-Match")
        none_match = parse_entity_tags(headers.get("if-none-match"), "If-None-Match")
        if check_read(table, key, entry, match, none_match):
            assert entry is not None
            return Response(status_code=304, headers={"ETag": etag(entry.mod_revision)})
        if entry is None:
            raise NotFound(table, key)
        return json_response(entry.value, headers=entry_headers(entry))

    @router.put(
        KEY_PATH,
        name="put_key",
        summary="Create or replace a document",
        response_model=None,
        openapi_extra=_body(JSON, "The document (any JSON value)."),
        responses={
            200: {"description": "Replaced; the key's new metadata."},
            201: {"description": "Created; the key's metadata."},
            **problem_responses(400, 412, 413, 415, 422),
        },
    )
    async def put_key(
        request: Request,
        table: str,
        key: str,
        *,
        ttl: Ttl = None,
        keep_ttl: Annotated[bool, Query(description="Keep the key's TTL.")] = False,
    ) -> Response:
        table, key = names(request, table, key)
        if ttl is not None and keep_ttl:
            raise InvalidArgument("give either ttl or keep_ttl, not both")
        value = await read_json(request, (JSON,), limits.max_batch_bytes)
        compares = _compares(api, table, key, request)
        result = await db.atxn(compares, [Put(table, key, value, ttl_ms(ttl), keep_ttl)])
        entry = result.entries[0]
        assert isinstance(entry, Entry)  # a put or merge answers the new entry
        headers = entry_headers(entry)
        if entry.version == 1:
            headers["Location"] = f"/v1/tables/{table}/keys/{quote(key, safe='')}"
        return json_response(entry_meta(table, entry), 201 if entry.version == 1 else 200, headers)

    @router.patch(
        KEY_PATH,
        name="patch_key",
        summary="Merge a JSON Merge Patch (RFC 7396) into a document",
        response_model=None,
        openapi_extra=_body(MERGE_PATCH_JSON, "An RFC 7396 merge patch; null removes a member."),
        responses={
            200: {"content": {JSON: {"schema": {}}}, "description": "The merged document."},
            201: {"content": {JSON: {"schema": {}}}, "description": "Created from the patch."},
            **problem_responses(400, 412, 413, 415, 422),
        },
    )
    async def patch_key(
        request: Request,
        table: str,
        key: str,
        *,
        ttl: Ttl = None,
    ) -> Response:
        table, key = names(request, table, key)
        patch = await read_json(request, (MERGE_PATCH_JSON, JSON), limits.max_batch_bytes)
        compares = _compares(api, table, key, request)
        result = await db.atxn(compares, [Merge(table, key, patch, ttl_ms(ttl))])
        entry = result.entries[0]
        assert isinstance(entry, Entry)  # a put or merge answers the new entry
        return json_response(entry.value, 201 if entry.version == 1 else 200, entry_headers(entry))

    @router.delete(
        KEY_PATH,
        name="delete_key",
        summary="Delete a document",
        openapi_extra={"parameters": _CONDITIONS},
        status_code=204,
        response_model=None,
        responses={204: {"description": "Deleted."}, **problem_responses(400, 404, 412)},
    )
    async def delete_key(request: Request, table: str, key: str) -> Response:
        table, key = names(request, table, key)
        compares = _compares(api, table, key, request, exists=True)
        result = await db.atxn(compares, [Delete(table, key)])
        if result.entries[0] is None:
            raise NotFound(table, key)
        return Response(status_code=204)

    return router


def _compares(
    api: HttpApi,
    table: str,
    key: str,
    request: Request,
    *,
    exists: bool = False,
) -> list[Any]:
    """The write's compares; ``exists``: the key must exist (``404`` at once if not)."""
    handle = api.existing(table)
    entry = None if handle is None else handle.entry(key)
    compares = write_compares(
        table,
        key,
        entry,
        parse_entity_tags(request.headers.get("if-match"), "If-Match"),
        parse_entity_tags(request.headers.get("if-none-match"), "If-None-Match"),
    )
    if exists and entry is None:
        raise NotFound(table, key)
    return compares
