"""``/docs`` works offline: Swagger UI's page references only this server's assets."""

from __future__ import annotations

import re

import httpx
from server_support import ServerProcess

#: Every URL the page makes the browser load: src/href attributes and JS string URLs.
_URLS = re.compile(r"""(?:src|href)=["']([^"']+)["']|\burl:\s*["']([^"']+)["']""")


def test_docs_load_only_local_assets(amber_server: ServerProcess) -> None:
    base = f"http://{amber_server.host}:{amber_server.ports['http']}"
    with httpx.Client(base_url=base, timeout=10) as http:
        page = http.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        urls = [a or b for a, b in _URLS.findall(page.text)]
        assert any(u.endswith("swagger-ui-bundle.js") for u in urls), urls
        assert any(u.endswith("swagger-ui.css") for u in urls), urls
        assert "/openapi.json" in urls
        for url in urls:
            assert url.startswith("/") and not url.startswith("//"), f"not local: {url}"
            response = http.get(url)
            assert response.status_code == 200, url
            assert len(response.content) > 100, url
        assert "<script" in page.text and "cdn" not in page.text.lower()
        assert '"validatorUrl": null' in page.text  # no badge fetched from the internet
        script = http.get(next(u for u in urls if u.endswith("swagger-ui-bundle.js")))
        assert "javascript" in script.headers["content-type"]
        # Swagger UI 5: it renders OpenAPI 3.1, which is what FastAPI generates.
        assert http.get("/openapi.json").json()["openapi"].startswith("3.1")
        assert "SwaggerUIBundle" in script.text
        assert http.get("/docs/oauth2-redirect").status_code == 200
