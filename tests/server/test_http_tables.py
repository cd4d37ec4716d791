"""HTTP: table list, scans with paging and filters, dropping, transactions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_support import LiveServer, problem

import amber


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


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def _fill(server: LiveServer) -> None:
    users = server.db.table("users")
    for n in range(30):
        users.put(f"u{n:02d}", {"n": n, "even": n % 2 == 0, "tags": ["x"] if n < 5 else []})
    server.db.table("other").put("a", 1)


def test_list_tables(http: httpx.Client, server: LiveServer) -> None:
    assert http.get("/v1/tables").json() == {"tables": [], "revision": 0}
    _fill(server)
    listed = http.get("/v1/tables").json()
    assert listed["tables"] == [
        {"name": "other", "keys": 1, "consistency": "strong"},
        {"name": "users", "keys": 30, "consistency": "strong"},
    ]
    assert listed["revision"] == 31
    made = http.put("/v1/tables/presence", json={"consistency": "eventual"})
    assert made.json() == {"name": "presence", "consistency": "eventual"}
    server.db.table("presence").put("ada", {"on": True})
    listed = http.get("/v1/tables").json()["tables"]
    assert {"name": "presence", "keys": 1, "consistency": "eventual"} in listed
    assert http.put("/v1/tables/users", json={"consistency": "eventual"}).status_code == 400
    assert http.put("/v1/tables/x", json={"consistency": "maybe"}).status_code == 422


def test_scan_range_prefix_limit_reverse(http: httpx.Client, server: LiveServer) -> None:
    _fill(server)
    page = http.get("/v1/tables/users", params={"start": "u05", "end": "u08"}).json()
    assert [item["key"] for item in page["items"]] == ["u05", "u06", "u07"]
    assert page["items"][0]["value"] == {"n": 5, "even": False, "tags": []}
    assert page == {**page, "table": "users", "more": False, "revision": 31, "next": None}
    by_prefix = http.get("/v1/tables/users", params={"prefix": "u1"}).json()
    assert [item["key"] for item in by_prefix["items"]] == [f"u1{d}" for d in range(10)]
    backwards = http.get("/v1/tables/users", params={"reverse": "true", "limit": 3}).json()
    assert [item["key"] for item in backwards["items"]] == ["u29", "u28", "u27"]
    assert backwards["more"] is True


@pytest.mark.parametrize("reverse", [False, True])
def test_paging_with_next_visits_every_key_once(
    http: httpx.Client, server: LiveServer, reverse: bool
) -> None:
    _fill(server)
    params: dict[str, Any] = {"limit": 7, "reverse": str(reverse).lower()}
    seen: list[str] = []
    for _ in range(10):
        page = http.get("/v1/tables/users", params=params).json()
        seen += [item["key"] for item in page["items"]]
        if page["next"] is None:
            assert page["more"] is False
            break
        params.update(page["next"])
    expected = [f"u{n:02d}" for n in range(30)]
    assert seen == (expected[::-1] if reverse else expected)


def test_scan_where(http: httpx.Client, server: LiveServer) -> None:
    _fill(server)
    where = '[["n", ">=", 20], ["even", "=", true]]'
    page = http.get("/v1/tables/users", params={"where": where}).json()
    assert [item["key"] for item in page["items"]] == [f"u{n}" for n in range(20, 30, 2)]
    tagged = http.get("/v1/tables/users", params={"where": '[["tags", "contains", "x"]]'}).json()
    assert len(tagged["items"]) == 5
    big = http.get("/v1/tables/users", params={"where": '[["n", "exists"]]', "limit": 5000})
    assert len(big.json()["items"]) == 30


@pytest.mark.parametrize(
    "where",
    [
        '{"n": 1}',
        "[[",
        '[["n", "~", 1]]',
        '[["n"]]',
        "[1]",
        '[["n", ">", NaN]]',
        '[["n", "<", {}]]',
    ],
)
def test_bad_where_is_400(http: httpx.Client, server: LiveServer, where: str) -> None:
    _fill(server)
    response = http.get("/v1/tables/users", params={"where": where})
    assert response.status_code == 400, response.text
    assert problem(response)["type"] == "/problems/invalid-query"


@pytest.mark.parametrize(
    "params", [{"limit": -1}, {"limit": 0}, {"limit": 10_001}, {"limit": "x"}, {"reverse": "maybe"}]
)
def test_bad_scan_parameters_are_400(http: httpx.Client, params: dict[str, Any]) -> None:
    response = http.get("/v1/tables/users", params=params)
    assert response.status_code == 400
    assert problem(response)["errors"]


def test_scan_of_a_missing_table_is_empty_and_creates_nothing(
    http: httpx.Client, server: LiveServer
) -> None:
    page = http.get("/v1/tables/ghost").json()
    assert page["items"] == [] and page["more"] is False
    assert server.db.tables() == []
    assert http.get("/v1/tables/bad%20name").status_code == 400


def test_drop_table(http: httpx.Client, server: LiveServer) -> None:
    _fill(server)
    assert http.delete("/v1/tables/users").status_code == 204
    assert server.db.tables() == ["other"]
    assert http.get("/v1/tables/users").json()["items"] == []
    missing = http.delete("/v1/tables/users")
    assert missing.status_code == 404
    assert "users" in problem(missing)["detail"]


# -- transactions ----------------------------------------------------------------


def test_txn_applies_all_ops_as_one_revision(http: httpx.Client, server: LiveServer) -> None:
    server.db.table("accounts").put("ada", {"balance": 10})
    response = http.post(
        "/v1/txn",
        json={
            "compare": [{"table": "accounts", "key": "ada", "target": "version", "value": 1}],
            "ops": [
                {"op": "merge", "table": "accounts", "key": "ada", "patch": {"balance": 5}},
                {"op": "put", "table": "audit", "key": "e1", "value": {"what": "debit"}, "ttl": 60},
                {"op": "delete", "table": "accounts", "key": "nobody"},
            ],
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["revision"] == 2
    merged, put, deleted = body["results"]
    assert merged["value"] == {"balance": 5} and merged["version"] == 2
    assert put["revision"] == 2 and put["expires_at_ms"] is not None
    assert deleted is None
    assert server.db.table("audit").get("e1") == {"what": "debit"}


def test_txn_failed_compare_is_412_and_changes_nothing(
    http: httpx.Client, server: LiveServer
) -> None:
    server.db.table("accounts").put("ada", {"balance": 10})
    response = http.post(
        "/v1/txn",
        json={
            "compare": [
                {"table": "accounts", "key": "ada", "target": "value", "op": "=", "value": {}},
            ],
            "ops": [{"op": "put", "table": "accounts", "key": "ada", "value": 0}],
        },
    )
    body = problem(response)
    assert response.status_code == 412
    assert body["table"] == "accounts" and body["key"] == "ada"
    assert server.db.table("accounts").get("ada") == {"balance": 10}
    assert server.db.revision == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"ops": []}, 422),
        ({"ops": [{"op": "upsert", "table": "t", "key": "k"}]}, 422),
        ({"ops": [{"op": "put", "table": "t", "key": "k"}]}, 422),
        ({"ops": [{"op": "put", "table": "t", "key": "k", "value": 1, "extra": 1}]}, 422),
        ({"ops": [{"op": "put", "table": "t", "key": "k", "value": 1, "ttl": -1}]}, 422),
        ({"ops": [{"op": "put", "table": "t", "key": "k", "value": 1, "ttl": 1,
                   "keep_ttl": True}]}, 400),
        ({"ops": [{"op": "delete", "table": "bad name", "key": "k"}]}, 400),
        ({"ops": [{"op": "delete", "table": "t", "key": ""}]}, 400),
        ({"compare": [{"table": "t", "key": "k", "target": "version", "value": "x"}],
          "ops": [{"op": "delete", "table": "t", "key": "k"}]}, 400),
        ({"compare": [{"table": "t", "key": "k", "target": "exists", "op": ">", "value": True}],
          "ops": [{"op": "delete", "table": "t", "key": "k"}]}, 400),
        ({"ops": [{"op": "put", "table": "t", "key": "k", "value": _nested(70)}]}, 422),
        ([1, 2], 422),
        ("ops", 422),
    ],
)  # fmt: skip
def test_bad_txn_bodies_are_4xx(
    http: httpx.Client, server: LiveServer, body: Any, status: int
) -> None:
    response = http.post("/v1/txn", json=body)
    assert response.status_code == status, response.text
    problem(response)
    assert server.db.revision == 0


def test_txn_body_rules_match_the_key_routes(http: httpx.Client) -> None:
    bad_json = http.post("/v1/txn", content=b"{bad", headers={"content-type": "application/json"})
    assert bad_json.status_code == 400
    assert http.post("/v1/txn", content=b"{bad").status_code == 400
    wrong_type = http.post("/v1/txn", content=b"{}", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    assert problem(wrong_type)["type"] == "/problems/unsupported-media-type"
