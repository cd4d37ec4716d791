"""HTTP: single documents — GET/PUT/PATCH/DELETE, ETags, compare-and-set, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import LiveServer, problem

import amber

MERGE = {"content-type": "application/merge-patch+json"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    db = amber.open("memory://")
    with LiveServer(db) as live:
        yield live
    db.close()


@pytest.fixture
def http(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def test_put_get_round_trip_with_revision_headers(http: httpx.Client) -> None:
    created = http.put("/v1/tables/accounts/keys/42", json={"user": "ada", "tags": ["x"]})
    assert created.status_code == 201
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == "/v1/tables/accounts/keys/42"
    assert created.json() == {
        "table": "accounts",
        "key": "42",
        "revision": 1,
        "create_revision": 1,
        "version": 1,
        "expires_at_ms": None,
    }
    replaced = http.put("/v1/tables/accounts/keys/42", json={"user": "ada", "age": 36})
    assert replaced.status_code == 200
    assert replaced.json()["version"] == 2
    got = http.get("/v1/tables/accounts/keys/42")
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {"user": "ada", "age": 36}
    assert got.headers["etag"] == '"2"'
    assert got.headers["amber-version"] == "2"
    assert got.headers["amber-create-revision"] == "1"
    assert "amber-expires-at" not in got.headers


def test_every_json_value_is_a_document(http: httpx.Client, server: LiveServer) -> None:
    values: list[Any] = ["text", 12, 1.5, True, None, [1, {"a": None}], {}]
    for index, value in enumerate(values):
        body = json.dumps(value).encode()
        assert http.put(f"/v1/tables/t/keys/k{index}", content=body).status_code == 201
        assert http.get(f"/v1/tables/t/keys/k{index}").json() == value
    assert server.db.table("t").get("k5") == [1, {"a": None}]


def test_patch_is_an_rfc7396_merge(http: httpx.Client, server: LiveServer) -> None:
    http.put("/v1/tables/accounts/keys/42", json={"user": "ada", "tags": ["x"], "n": {"a": 1}})
    merged = http.patch(
        "/v1/tables/accounts/keys/42",
        content=b'{"age": 37, "tags": null, "n": {"b": 2}}',
        headers=MERGE,
    )
    assert merged.status_code == 200
    assert merged.json() == {"user": "ada", "age": 37, "n": {"a": 1, "b": 2}}
    assert merged.headers["etag"] == '"2"'
    assert server.db.table("accounts").get("42") == merged.json()
    created = http.patch("/v1/tables/accounts/keys/new", content=b'{"a": 1}', headers=MERGE)
    assert created.status_code == 201
    assert created.json() == {"a": 1}


def test_patch_takes_merge_patch_or_json_only(http: httpx.Client) -> None:
    as_json = http.patch("/v1/tables/t/keys/k", json={"a": 1})
    assert as_json.status_code == 201
    wrong = http.patch(
        "/v1/tables/t/keys/k", content=b'[{"op": "add"}]', headers={"content-type": "text/plain"}
    )
    body = problem(wrong)
    assert wrong.status_code == 415
    assert wrong.headers["accept-patch"] == "application/merge-patch+json"
    assert "merge-patch" in body["detail"]


def test_delete(http: httpx.Client, server: LiveServer) -> None:
    http.put("/v1/tables/t/keys/k", json=1)
    assert http.delete("/v1/tables/t/keys/k").status_code == 204
    assert "k" not in server.db.table("t")
    again = http.delete("/v1/tables/t/keys/k")
    assert again.status_code == 404
    assert problem(again)["type"] == "/problems/not-found"
    assert http.delete("/v1/tables/never/keys/k").status_code == 404


def test_missing_key_and_table_are_404_problems(http: httpx.Client, server: LiveServer) -> None:
    missing = http.get("/v1/tables/nowhere/keys/nothing")
    body = problem(missing)
    assert missing.status_code == 404
    assert body == {
        "type": "/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "key 'nothing' not found in table 'nowhere'",
        "table": "nowhere",
        "key": "nothing",
    }
    # A read of a made-up table leaves nothing behind.
    assert server.db.tables() == []


def test_keys_may_hold_slashes_and_unicode(http: httpx.Client, server: LiveServer) -> None:
    assert http.put("/v1/tables/t/keys/a/b/c", json=1).status_code == 201
    assert http.put("/v1/tables/t/keys/caf%C3%A9%20%E2%9C%93", json=2).status_code == 201
    assert server.db.table("t").get("a/b/c") == 1
    assert server.db.table("t").get("café ✓") == 2
    assert http.get("/v1/tables/t/keys/caf%C3%A9%20%E2%9C%93").json() == 2
    server.db.table("t").put("two\nlines", 3)  # every UTF-8 string is a key
    assert http.get("/v1/tables/t/keys/two%0Alines").json() == 3
    assert http.delete("/v1/tables/t/keys/two%0Alines").status_code == 204


def test_if_match_is_compare_and_set(http: httpx.Client, server: LiveServer) -> None:
    etag = http.put("/v1/tables/t/keys/k", json={"n": 1}).headers["etag"]
    ok = http.put("/v1/tables/t/keys/k", json={"n": 2}, headers={"if-match": etag})
    assert ok.status_code == 200
    stale = http.put("/v1/tables/t/keys/k", json={"n": 3}, headers={"if-match": etag})
    body = problem(stale)
    assert stale.status_code == 412
    assert body["type"] == "/problems/condition-failed"
    assert body["table"] == "t" and body["key"] == "k"
    assert server.db.table("t").get("k") == {"n": 2}
    stale_patch = http.patch(
        "/v1/tables/t/keys/k", content=b'{"n": 4}', headers={**MERGE, "if-match": etag}
    )
    assert stale_patch.status_code == 412
    stale_delete = http.delete("/v1/tables/t/keys/k", headers={"if-match": etag})
    assert stale_delete.status_code == 412
    current = ok.headers["etag"]
    assert http.delete("/v1/tables/t/keys/k", headers={"if-match": current}).status_code == 204


def test_if_match_forms(http: httpx.Client) -> None:
    http.put("/v1/tables/t/keys/k", json=1)  # revision 1
    # A list matches if any tag does; a bare number is accepted; weak tags never match.
    assert http.put("/v1/tables/t/keys/k", json=2, headers={"if-match": '"9", "1"'}).is_success
    assert http.put("/v1/tables/t/keys/k", json=3, headers={"if-match": "2"}).is_success
    assert http.put("/v1/tables/t/keys/k", json=4, headers={"if-match": 'W/"3"'}).status_code == 412
    assert http.put("/v1/tables/t/keys/k", json=4, headers={"if-match": '"abc"'}).status_code == 412
    assert http.put("/v1/tables/t/keys/k", json=5, headers={"if-match": "*"}).status_code == 200
    absent = http.put("/v1/tables/t/keys/absent", json=1, headers={"if-match": "*"})
    assert absent.status_code == 412
    assert "absent" in problem(absent)["detail"]
    malformed = http.put("/v1/tables/t/keys/k", json=1, headers={"if-match": '"unterminated'})
    assert malformed.status_code == 400
    assert problem(malformed)["type"] == "/problems/invalid-argument"


def test_if_none_match_star_creates_only(http: httpx.Client, server: LiveServer) -> None:
    first = http.put("/v1/tables/t/keys/k", json=1, headers={"if-none-match": "*"})
    assert first.status_code == 201
    second = http.put("/v1/tables/t/keys/k", json=2, headers={"if-none-match": "*"})
    assert second.status_code == 412
    assert server.db.table("t").get("k") == 1


def test_conditional_get(http: httpx.Client) -> None:
    etag = http.put("/v1/tables/t/keys/k", json={"a": 1}).headers["etag"]
    not_modified = http.get("/v1/tables/t/keys/k", headers={"if-none-match": etag})
    assert not_modified.status_code == 304
    assert not_modified.headers["etag"] == etag
    assert not_modified.content == b""
    assert http.get("/v1/tables/t/keys/k", headers={"if-none-match": 'W/"1"'}).status_code == 304
    assert http.get("/v1/tables/t/keys/k", headers={"if-none-match": '"7"'}).status_code == 200
    assert http.get("/v1/tables/t/keys/k", headers={"if-match": '"7"'}).status_code == 412


def test_concurrent_compare_and_set_lets_exactly_one_win(server: LiveServer) -> None:
    import asyncio

    async def race() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            etag = (await client.put("/v1/tables/t/keys/counter", json=0)).headers["etag"]
            responses = await asyncio.gather(
                *(
                    client.put("/v1/tables/t/keys/counter", json=n, headers={"if-match": etag})
                    for n in range(1, 21)
                )
            )
            return [r.status_code for r in responses]

    statuses = asyncio.run(race())
    assert sorted(statuses) == [200] + [412] * 19


def test_ttl(http: httpx.Client, server: LiveServer) -> None:
    put = http.put("/v1/tables/t/keys/k", json=1, params={"ttl": "60"})
    assert put.json()["expires_at_ms"] is not None
    got = http.get("/v1/tables/t/keys/k")
    assert int(got.headers["amber-expires-at"]) == put.json()["expires_at_ms"]
    kept = http.put("/v1/tables/t/keys/k", json=2, params={"keep_ttl": "true"})
    assert kept.json()["expires_at_ms"] == put.json()["expires_at_ms"]
    cleared = http.put("/v1/tables/t/keys/k", json=3)
    assert cleared.json()["expires_at_ms"] is None
    both = http.put("/v1/tables/t/keys/k", json=3, params={"ttl": "1", "keep_ttl": "true"})
    assert both.status_code == 400
    for bad in ("0", "-1", "nan", "inf", "1e300", "soon"):
        response = http.put("/v1/tables/t/keys/k", json=3, params={"ttl": bad})
        assert response.status_code == 400, bad
        problem(response)
    short = http.put("/v1/tables/t/keys/short", json=1, params={"ttl": "0.05"})
    assert short.status_code == 201
    import time

    deadline = time.monotonic() + 5
    while http.get("/v1/tables/t/keys/short").status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("body", "headers", "status", "slug"),
    [
        (b"{bad", {"content-type": "application/json"}, 400, "invalid-argument"),
        (b"", {"content-type": "application/json"}, 400, "invalid-argument"),
        (b'{"a": NaN}', {"content-type": "application/json"}, 400, "invalid-argument"),
        (b"[Infinity]", {}, 400, "invalid-argument"),
        (b"\xff\xfe{", {"content-type": "application/json"}, 400, "invalid-argument"),
        (b"[" * 100_000, {"content-type": "application/json"}, 400, "invalid-argument"),
        (b"[" * 70 + b"]" * 70, {"content-type": "application/json"}, 422, "invalid-value"),
        (b'"\\ud800"', {"content-type": "application/json"}, 422, "invalid-value"),
        (b"1", {"content-type": "text/plain"}, 415, "unsupported-media-type"),
        (b"1", {"content-type": "application/json; charset=latin1"}, 415, "unsupported-media-type"),
    ],
)
def test_bad_bodies_are_4xx_problems(
    server: LiveServer, body: bytes, headers: dict[str, str], status: int, slug: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        response = http.put("/v1/tables/t/keys/k", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert problem(response)["type"] == f"/problems/{slug}"
    assert server.db.tables() == []


def test_a_body_without_content_type_is_json(http: httpx.Client) -> None:
    assert http.put("/v1/tables/t/keys/k", content=b'{"a": 1}').status_code == 201


def test_invalid_value_names_the_member(http: httpx.Client) -> None:
    deep: object = 1
    for _ in range(70):
        deep = {"x": deep}
    response = http.put("/v1/tables/t/keys/k", json={"ok": 1, "deep": deep})
    assert response.status_code == 422
    assert problem(response)["path"].startswith("/deep/x")


def test_bad_names_are_400(http: httpx.Client) -> None:
    bad_table = http.put("/v1/tables/no%20spaces/keys/k", json=1)
    assert bad_table.status_code == 400
    assert problem(bad_table)["type"] == "/problems/invalid-name"
    long_key = "k" * 1025
    assert http.put(f"/v1/tables/t/keys/{long_key}", json=1).status_code == 400
    assert http.get(f"/v1/tables/t/keys/{long_key}").status_code == 400
    assert http.delete(f"/v1/tables/t/keys/{long_key}").status_code == 400
    assert problem(http.get("/v1/tables/t/keys/"))["type"] == "/problems/invalid-name"


def test_too_large_bodies_are_413_before_reading(tmp_path: Path) -> None:
    limits = amber.Config().limits
    small = amber.Config(limits=type(limits)(max_value_bytes=1000, max_batch_bytes=4000))
    db = amber.open(tmp_path / "db", config=small)
    with LiveServer(db) as live, httpx.Client(base_url=live.url, timeout=10) as http:
        declared = http.put("/v1/tables/t/keys/k", content=b"1" * 5000)
        assert declared.status_code == 413
        assert problem(declared)["type"] == "/problems/too-large"

        def chunks() -> Iterator[bytes]:
            yield b'"'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"'

        streamed = http.put("/v1/tables/t/keys/k", content=chunks())
        assert streamed.status_code == 413
        value = http.put("/v1/tables/t/keys/k", json="x" * 2000)
        assert value.status_code == 413
        assert http.put("/v1/tables/t/keys/k", json="x" * 10).status_code == 201
    db.close()


def test_unknown_routes_and_methods_are_problems(http: httpx.Client) -> None:
    assert problem(http.get("/v2/nothing"))["status"] == 404
    not_allowed = http.post("/v1/tables/t/keys/k", json=1)
    assert not_allowed.status_code == 405
    assert problem(not_allowed)["type"] == "/problems/method-not-allowed"
