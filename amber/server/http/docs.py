"""``/docs``: Swagger UI served from this process, so it works offline.

FastAPI's default page loads Swagger UI from a CDN: on a machine without
internet (or behind a proxy that blocks it) ``/docs`` is blank. The assets
come from the pinned ``swagger-ui-bundle-v2`` package (Swagger UI 5, which
renders the OpenAPI 3.1 document FastAPI generates) under ``/docs/assets/``.

The page and the document hold no data, so they are served without the
password (as the console's files are); the document declares the Bearer
scheme, so a server with a password shows Swagger UI's *Authorize* button
and "Try it out" sends the header.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

__all__ = ["ASSETS", "BEARER", "DOCS_PREFIX", "install_docs"]

#: The page, its assets and its OAuth2 redirect live under this path.
DOCS_PREFIX = "/docs"
#: Where the Swagger UI files are served.
ASSETS = f"{DOCS_PREFIX}/assets"
_REDIRECT = f"{DOCS_PREFIX}/oauth2-redirect"
#: The OpenAPI security scheme of the server's password (``requirepass``).
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "The server's password (requirepass), when it has one.",
}


def install_docs(app: FastAPI, title: str) -> None:
    """Serve Swagger UI at ``/docs`` for ``app.openapi_url``, every asset local."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get(DOCS_PREFIX, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - API docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            oauth2_redirect_url=_REDIRECT,
            # No badge from the online validator (validator.swagger.io).
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(_REDIRECT, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
