"""JSON in and out: request bodies read within limits, responses encoded once.

A request body is read only up to the database's batch limit (a larger one
is ``413`` before it is buffered), must be UTF-8 JSON of an accepted media
type (``415`` otherwise; a body without ``Content-Type`` is taken as JSON)
and must be strict JSON: ``NaN``/``Infinity`` and invalid text are ``400``.
Whether the document itself is acceptable (depth, sizes) is the database's
call (``422 invalid-value``), so HTTP and the embedded API agree.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ...errors import InvalidArgument, TooLarge

__all__ = ["JSON", "MERGE_PATCH_JSON", "dumps", "json_response", "read_json"]

JSON = "application/json"
MERGE_PATCH_JSON = "application/merge-patch+json"

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response of ``content`` (stored values are dicts/lists: no copy)."""
    return Response(dumps(content).encode(), status, headers=headers, media_type=JSON)


def _reject_constant(name: str) -> Any:
    raise InvalidArgument(f"invalid JSON: {name} is not a JSON value")


def _media_type(request: Request, accepted: tuple[str, ...]) -> None:
    header = request.headers.get("content-type")
    if header is None:
        return
    media, _, params = header.partition(";")
    media = media.strip().lower()
    if media not in accepted:
        raise HTTPException(
            415,
            f"Content-Type must be {' or '.join(accepted)}, not {media or 'empty'!r}",
            headers={"Accept-Patch": MERGE_PATCH_JSON} if MERGE_PATCH_JSON in accepted else None,
        )
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise HTTPException(415, f"JSON must be UTF-8, not charset {value.strip()!r}")


async def read_json(request: Request, accepted: tuple[str, ...], limit: int) -> Any:
    """The request's JSON body, parsed; see the module doc for the rules."""
    _media_type(request, accepted)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise InvalidArgument("the request body is empty: send a JSON document")
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except InvalidArgument:
        raise
    except UnicodeDecodeError:
        raise InvalidArgument("invalid JSON: the body is not UTF-8") from None
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument("invalid JSON: nested too deeply") from None
