"""The HTTP/JSON front end (FastAPI, served by uvicorn on the server's loop).

| route | what |
| --- | --- |
| ``GET/PUT/PATCH/DELETE /v1/tables/{table}/keys/{key}`` | one document (:mod:`.keys`) |
| ``GET /v1/tables``, ``GET/DELETE /v1/tables/{table}`` | list, scan, drop (:mod:`.tables`) |
| ``POST /v1/txn`` | atomic compares + ops (:mod:`.txn`) |
| ``GET /v1/watch`` | changes as Server-Sent Events (:mod:`.watch`) |
| ``GET /health``, ``GET /metrics`` | health, Prometheus (:mod:`.ops`) |
| ``GET /openapi.json``, ``GET /docs`` | the API description |

Revisions are entity tags (:mod:`.conditions`); errors are problem+json
(:mod:`.problems`) from the wire-error table RESP uses too.
"""

from .app import close_streams, create_app

__all__ = ["close_streams", "create_app"]
