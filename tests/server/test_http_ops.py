"""HTTP: /health, /metrics, the OpenAPI document, the password, pure helpers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from http_support import LiveServer, problem

import amber
from amber.database import Compare
from amber.errors import ConditionFailed, InvalidArgument
from amber.server.http.conditions import EntityTags, parse_entity_tags, write_compares


@pytest.fixture
def server() -> Iterator[LiveServer]:
    db = amber.open("memory://")
    with LiveServer(db) as live:
        yield live
    db.close()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_health(http: httpx.Client, server: LiveServer) -> None:
    response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["backend"] == "memory"
    server.ctx.health_sources["broken"] = lambda: {"ok": False}
    degraded = http.get("/health")
    assert degraded.status_code == 503
    assert degraded.json()["status"] == "degraded"


def test_metrics_count_requests_and_expose_the_database(
    http: httpx.Client, server: LiveServer
) -> None:
    http.put("/v1/tables/t/keys/k", json=1)
    http.get("/v1/tables/t/keys/k")
    http.get("/v1/tables/t/keys/missing")
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'amber_requests_total{command="put_key",frontend="http",outcome="ok"} 1.0',
        'amber_requests_total{command="get_key",frontend="http",outcome="ok"} 1.0',
        'amber_requests_total{command="get_key",frontend="http",outcome="error"} 1.0',
        'amber_request_seconds_count{command="get_key",frontend="http"} 2.0',
        'amber_keys{table="t"} 1.0',
        "amber_revision 1.0",
        "amber_watchers 0.0",
        'amber_requests_in_flight{frontend="http"} 1.0',  # this scrape
    ):
        assert line in text, line
    for family in ("amber_fsyncs_total", "amber_wal_bytes_total", "amber_connections"):
        assert family in text


def test_openapi_document_and_docs(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    paths = document["paths"]
    assert set(paths["/v1/tables/{table}/keys/{key}"]) == {"get", "put", "patch", "delete"}
    patch = paths["/v1/tables/{table}/keys/{key}"]["patch"]
    assert "application/merge-patch+json" in patch["requestBody"]["content"]
    assert set(paths) >= {"/v1/tables", "/v1/tables/{table}", "/v1/txn", "/v1/watch", "/health"}
    txn_body = paths["/v1/txn"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert txn_body == {"$ref": "#/components/schemas/TxnRequest"}
    assert {"TxnRequest", "TxnPut", "TxnMerge", "TxnDelete"} <= set(
        document["components"]["schemas"]
    )
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


def test_password_guards_everything_but_health(tmp_path: object) -> None:
    db = amber.open("memory://")
    password = ["s3cret"]
    with (
        LiveServer(db, password=lambda: password[0]) as live,
        httpx.Client(base_url=live.url, timeout=10) as http,
    ):
        refused = http.get("/v1/tables")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="amber"'
        assert problem(refused)["type"] == "/problems/unauthorized"
        assert http.get("/v1/tables", headers={"authorization": "Bearer nope"}).status_code == 401
        assert http.get("/v1/tables", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/v1/tables", auth=("default", "s3cret")).status_code == 200
        assert http.get("/v1/tables", headers={"authorization": "Basic !!"}).status_code == 401
        assert http.get("/health").status_code == 200
        password[0] = ""  # CONFIG SET requirepass "" takes effect at once
        assert http.get("/v1/tables").status_code == 200
    db.close()


# -- pure parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("*", EntityTags(any=True)),
        ('"12"', EntityTags(tags=((False, "12"),))),
        ('W/"12", "13"', EntityTags(tags=((True, "12"), (False, "13")))),
        ("12", EntityTags(tags=((False, "12"),))),
        ('  "a" ,"b",', EntityTags(tags=((False, "a"), (False, "b")))),
    ],
)
def test_parse_entity_tags(header: str, expected: EntityTags) -> None:
    assert parse_entity_tags(header, "If-Match") == expected


@pytest.mark.parametrize("header", ['"open', "", ",", 'W/12 "', '"a" "b"'])
def test_parse_entity_tags_rejects_malformed(header: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_entity_tags(header, "If-Match")


def test_write_compares_pin_the_revision_read() -> None:
    entry = amber.Entry("k", 1, 3, 7, 2, None)
    if_match = parse_entity_tags('"5", "7"', "If-Match")
    assert write_compares("t", "k", entry, if_match, None) == [
        Compare("t", "k", "mod_revision", "=", 7)
    ]
    none_match = parse_entity_tags('"5", W/"6"', "If-None-Match")
    assert write_compares("t", "k", entry, None, none_match) == [
        Compare("t", "k", "mod_revision", "!=", 5),
        Compare("t", "k", "mod_revision", "!=", 6),
    ]
    with pytest.raises(ConditionFailed):
        write_compares("t", "k", None, parse_entity_tags("*", "If-Match"), None)
    with pytest.raises(ConditionFailed):
        write_compares("t", "k", entry, None, parse_entity_tags('W/"7"', "If-None-Match"))
