"""Issue #12 item 11: names percent-encoded as invalid UTF-8 are refused, not mangled.

uvicorn and Starlette decode ``%xx`` escapes with ``errors="replace"``, so
``PUT /v1/tables/t/keys/%fe%ff`` and ``…/%ff%fe`` both wrote the key of two
U+FFFD. Every route now answers ``400`` (a problem document) for a path or
query string that is not percent-encoded UTF-8, as RESP refuses the same bytes.

httpx sends a URL given as a string with its escapes as they are
(``raw_path`` keeps ``%fe``), which the first test checks too.
"""

from __future__ import annotations

import httpx
import pytest
import redis
from attack_support import SandboxedFactory, ServerProcess, assert_responsive

BAD = ("%fe%ff", "%ff%fe", "%c3", "%c3%28", "%80", "%ed%a0%80", "ok%ff")


@pytest.fixture
def server(server_factory: SandboxedFactory) -> ServerProcess:
    return server_factory()


def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=f"http://{server.host}:{server.ports['http']}", timeout=20)


def assert_refused(response: httpx.Response, slug: str, where: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == f"/problems/{slug}" and body["status"] == 400
    assert f"request's {where} is not valid UTF-8" in body["detail"], body


def test_keys_and_tables_of_invalid_utf8_are_refused(server: ServerProcess) -> None:
    with client(server) as http:
        request = http.build_request("PUT", "/v1/tables/t/keys/%fe%ff?prefix=%ff", json=1)
        assert request.url.raw_path == b"/v1/tables/t/keys/%fe%ff?prefix=%ff"  # sent as given
        for bad in BAD:
            key = f"/v1/tables/t/keys/{bad}"
            assert_refused(http.put(key, json={"n": 1}), "invalid-name", "path")
            assert_refused(http.get(key), "invalid-name", "path")
            assert_refused(
                http.patch(
                    key, content=b"{}", headers={"content-type": "application/merge-patch+json"}
                ),
                "invalid-name",
                "path",
            )
            assert_refused(http.delete(key), "invalid-name", "path")
            assert_refused(http.put(f"/v1/tables/{bad}/keys/k", json=1), "invalid-name", "path")
            assert_refused(http.get(f"/v1/tables/{bad}"), "invalid-name", "path")
            assert_refused(http.delete(f"/v1/tables/{bad}"), "invalid-name", "path")
        # Nothing was written: no table, no key of U+FFFD.
        assert http.get("/v1/tables").json()["tables"] == []
        assert http.get("/v1/tables/t/keys/%ef%bf%bd%ef%bf%bd").status_code == 404
    assert_responsive(server)


def test_scans_and_watches_refuse_invalid_utf8_in_the_query(server: ServerProcess) -> None:
    with client(server) as http:
        assert http.put("/v1/tables/t/keys/%ef%bf%bd", json=1).status_code == 201
        for bad in BAD:
            for query in (f"prefix={bad}", f"start={bad}", f"end={bad}", f"{bad}=1"):
                response = http.get(f"/v1/tables/t?{query}")
                assert_refused(response, "invalid-argument", "query string")
            for query in (f"table={bad}", f"table=t&key={bad}", f"table=t&prefix={bad}"):
                response = http.get(f"/v1/watch?{query}")
                assert_refused(response, "invalid-argument", "query string")
    assert_responsive(server)


def test_valid_escapes_still_name_their_keys_as_resp_does(server: ServerProcess) -> None:
    resp = server.redis()
    with client(server) as http:
        assert http.put("/v1/tables/t/keys/%c3%a9", json="e-acute").status_code == 201
        assert http.put("/v1/tables/t/keys/%25ff", json="percent").status_code == 201
        assert http.put("/v1/tables/t/keys/a%2Fb%20c", json="slash").status_code == 201
        keys = [item["key"] for item in http.get("/v1/tables/t").json()["items"]]
        assert sorted(keys) == sorted(["é", "%ff", "a/b c"])
        assert http.get("/v1/tables/t?prefix=%c3").status_code == 400
        assert [i["key"] for i in http.get("/v1/tables/t?prefix=%c3%a9").json()["items"]] == ["é"]
    assert resp.get("t:é".encode()) == b"e-acute"
    assert resp.get("t:%ff") == b"percent"
    # RESP refuses the same bytes.
    for raw in (b"t:\xfe\xff", b"t:\xff\xfe", b"\xff:k"):
        with pytest.raises(redis.ResponseError, match="not valid UTF-8"):
            resp.set(raw, "1")
    resp.close()
