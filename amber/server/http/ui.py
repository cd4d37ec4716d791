"""``/ui``: the web console, three static files served by the server itself.

The console is plain HTML, one JavaScript module and CSS (``console/``,
package data: no build step, no CDN, works offline). It holds no data of
its own: everything it shows it reads from the public API with the
password the user types, so these routes are open (see ``middleware``) and
the API routes behind them still answer ``401`` without it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import Response

__all__ = ["CONSOLE_DIR", "UI_PREFIX", "console_router"]

UI_PREFIX = "/ui"
CONSOLE_DIR = Path(__file__).with_name("console")

#: The only files served, by name: nothing else under the folder is reachable.
_FILES = {
    "index.html": "text/html; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}

#: Same-origin only: no inline script, no outside asset, no framing (clickjacking).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate, so a new version of the console shows after an upgrade.
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    media_type = _FILES.get(name)
    if media_type is None:
        raise HTTPException(404, f"the console has no file {name!r}")
    return Response((CONSOLE_DIR / name).read_bytes(), media_type=media_type, headers=_HEADERS)


def console_router() -> APIRouter:
    """``GET /ui`` (the page) and ``GET /ui/{name}`` (its script and style)."""
    router = APIRouter(include_in_schema=False)

    @router.api_route(UI_PREFIX, methods=["GET", "HEAD"], name="console")
    @router.api_route(UI_PREFIX + "/", methods=["GET", "HEAD"], name="console")
    async def page() -> Response:
        return _file("index.html")

    @router.api_route(UI_PREFIX + "/{name}", methods=["GET", "HEAD"], name="console_asset")
    async def asset(name: str) -> Response:
        return _file(name)

    return router
