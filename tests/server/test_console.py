"""The web console at ``/ui``, driven in headless Chromium against a real ``amber serve``.

The server has a password, so every step also checks the console's auth:
the page asks for it, sends ``Authorization: Bearer`` on every call
(including the fetch-streamed watch) and shows nothing before it. The
cluster pane is checked against a real 3-node cluster, and ``/docs``
(Swagger UI) is rendered from the server's own assets.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from server_support import ServerFactory, ServerProcess

from amber.replication.local import LocalCluster, LocalNode, free_base_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.timeout(120)

PASSWORD = "console-s3cret"
WAIT_S = 15.0


@pytest.fixture
def server(server_factory: ServerFactory) -> ServerProcess:
    return server_factory("--requirepass", PASSWORD, ports=("--port", "0", "--http-port", "0"))


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    url = f"http://{server.host}:{server.ports['http']}"
    headers = {"Authorization": f"Bearer {PASSWORD}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium (its own sessionStorage) driven by the system chromedriver."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    # An explicit driver and browser: Selenium Manager never downloads anything.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(
        driver, WAIT_S, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(condition, f"timed out waiting for {what}")


def _by_id(driver: Any, name: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, name)


def _all(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def _texts(driver: Any, css: str) -> list[str]:
    return [element.text for element in _all(driver, css)]


def _open(driver: Any, server: ServerProcess) -> None:
    driver.get(f"http://{server.host}:{server.ports['http']}/ui")


def _unlock(driver: Any, password: str) -> None:
    _wait(driver, lambda d: _by_id(d, "login").is_displayed(), "the password prompt")
    field = _by_id(driver, "password")
    field.clear()
    field.send_keys(password)
    _by_id(driver, "login-form").submit()


def _table_counts(driver: Any) -> dict[str, str]:
    rows = _all(driver, "#tables li")
    return {
        row.get_attribute("data-table"): row.find_element("css selector", ".count").text
        for row in rows
    }


def _shown_document(driver: Any) -> Any:
    text = _by_id(driver, "doc").text
    return json.loads(text) if text else None


def test_console_files_are_open_and_nothing_else_is(
    server: ServerProcess, http: httpx.Client
) -> None:
    """The page asks for the password itself, so it must load without one; the API must not."""
    base = f"http://{server.host}:{server.ports['http']}"
    with httpx.Client(base_url=base, timeout=10) as anonymous:
        for path, media_type in (
            ("/ui", "text/html"),
            ("/ui/", "text/html"),
            ("/ui/console.js", "text/javascript"),
            ("/ui/console.css", "text/css"),
        ):
            page = anonymous.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith(media_type)
            csp = page.headers["content-security-policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        # Only the three files: nothing else under the folder, no way out of it.
        assert anonymous.get("/ui/__init__.py").status_code == 404
        assert anonymous.get("/ui/..%2fui.py").status_code == 404
        for path in ("/v1/tables", "/metrics", "/v1/watch", "/uix", "/ui-secret"):
            assert anonymous.get(path).status_code == 401, path
    # No outside asset or URL at all, so it works offline (the SVG namespace is a name).
    html, css, js = (http.get(f"/ui/{name}").text for name in ("", "console.css", "console.js"))
    assert "//" not in html and "//" not in css
    assert js.replace("http://www.w3.org/2000/svg", "").count("http") == 0
    assert "/ui/console.js" in html and "/ui/console.css" in html
    # Document text reaches the page as text only.
    assert ".innerHTML" not in js and "insertAdjacentHTML" not in js and "outerHTML" not in js


def test_without_the_password_the_console_shows_only_the_prompt(
    server: ServerProcess, http: httpx.Client, browser: Any
) -> None:
    assert http.put("/v1/tables/users/keys/alice", json={"secret": "s-alice"}).status_code == 201
    _open(browser, server)
    _wait(browser, lambda d: _by_id(d, "login").is_displayed(), "the password prompt")
    assert not _by_id(browser, "app").is_displayed()
    assert _all(browser, "#tables li") == []
    assert "alice" not in browser.page_source and "s-alice" not in browser.page_source

    _unlock(browser, "wrong password")
    _wait(browser, lambda d: _by_id(d, "login-error").text == "Wrong password.", "the refusal")
    assert not _by_id(browser, "app").is_displayed()
    assert "alice" not in browser.page_source and "s-alice" not in browser.page_source
    # The page itself is open; the data behind it is not.
    base = f"http://{server.host}:{server.ports['http']}"
    assert httpx.get(f"{base}/ui", timeout=10).status_code == 200
    assert httpx.get(f"{base}/v1/tables", timeout=10).status_code == 401


def test_console_browses_edits_and_watches(
    server: ServerProcess, http: httpx.Client, browser: Any
) -> None:
    alice = {"name": "Alice", "age": 30, "bio": "<img src=x onerror=alert(1)>"}
    assert http.put("/v1/tables/users/keys/alice", json=alice).status_code == 201
    assert http.put("/v1/tables/users/keys/bob", json={"name": "Bob"}).status_code == 201
    assert http.put("/v1/tables/orders/keys/o-1", json={"total": 12}).status_code == 201
    # A key that needs percent-encoding in a path, with a TTL.
    odd_key = "o/2 ?#é"
    odd = http.put(f"/v1/tables/orders/keys/{quote(odd_key, safe='')}?ttl=3600", json=[5])
    assert odd.status_code == 201
    resp = server.redis(password=PASSWORD, decode_responses=True)
    resp.mset({f"logs:{n:03d}": f"line {n}" for n in range(60)})

    _open(browser, server)
    _unlock(browser, PASSWORD)

    # Tables with their key counts.
    _wait(browser, lambda d: _by_id(d, "app").is_displayed(), "the console")
    counts = {"logs": "60", "orders": "2", "users": "2"}
    _wait(browser, lambda d: _table_counts(d) == counts, f"tables {counts}")
    assert not _by_id(browser, "login").is_displayed()
    browser.get_log("browser")  # drop the 401 that brought up the prompt

    # Paging with the scan's `next` cursor: 50 keys, then the other 10.
    _all(browser, "#tables li[data-table=logs] button")[0].click()
    _wait(browser, lambda d: len(_all(d, "#keys li")) == 50, "the first page of keys")
    assert _by_id(browser, "more").is_displayed()
    _by_id(browser, "more").click()
    _wait(browser, lambda d: len(_all(d, "#keys li")) == 60, "the second page of keys")
    assert not _by_id(browser, "more").is_displayed()
    assert _texts(browser, "#keys li") == [f"{n:03d}" for n in range(60)]

    # A key with a slash, spaces, # and ? opens by its exact name; its TTL shows.
    _all(browser, "#tables li[data-table=orders] button")[0].click()
    _wait(browser, lambda d: _texts(d, "#keys li") == ["o-1", odd_key], "the orders' keys")
    _all(browser, "#keys li button")[1].click()
    _wait(browser, lambda d: _shown_document(d) == [5], "the odd key's document")
    ttl = re.fullmatch(r"(\d+) s \(expires (\S+)\)", _by_id(browser, "meta-ttl").text)
    assert ttl is not None and 3000 < int(ttl[1]) <= 3600
    expires_ms = odd.json()["expires_at_ms"]  # whole ms, as JavaScript's Date has them
    expires = datetime.fromtimestamp(expires_ms // 1000, UTC) + timedelta(
        milliseconds=expires_ms % 1000
    )
    assert ttl[2] == expires.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    # Prefix search, then one key's document and its revisions.
    _all(browser, "#tables li[data-table=users] button")[0].click()
    _wait(browser, lambda d: _texts(d, "#keys li") == ["alice", "bob"], "the users' keys")
    _by_id(browser, "prefix").send_keys("al")
    _by_id(browser, "search-form").submit()
    _wait(browser, lambda d: _texts(d, "#keys li") == ["alice"], "the prefix search")
    _all(browser, "#keys li button")[0].click()
    _wait(browser, lambda d: _shown_document(d) == alice, "alice's document")
    entry = http.get("/v1/tables/users/keys/alice")
    assert _by_id(browser, "meta-revision").text == entry.headers["ETag"].strip('"')
    assert _by_id(browser, "meta-create").text == entry.headers["Amber-Create-Revision"]
    assert _by_id(browser, "meta-version").text == "1"
    assert _by_id(browser, "meta-ttl").text == "none"
    # Document text is text: the stored <img> shows as characters, not an element.
    assert _all(browser, "#doc img") == []
    assert "<img src=x onerror=alert(1)>" in _by_id(browser, "doc").text

    # The watch pane is streaming before anything changes.
    _wait(browser, lambda d: "live" in _by_id(d, "watch-status").text, "the watch stream")

    # Edit with a merge patch: the new document and revision show.
    patch = _by_id(browser, "patch")
    patch.clear()
    patch.send_keys('{"age": 31, "city": "Oslo", "bio": null}')
    _by_id(browser, "patch-form").submit()
    merged = {"name": "Alice", "age": 31, "city": "Oslo"}
    _wait(browser, lambda d: _shown_document(d) == merged, "the patched document")
    entry = http.get("/v1/tables/users/keys/alice")
    assert entry.json() == merged
    revision = entry.headers["ETag"].strip('"')
    assert _by_id(browser, "patch-result").text == f"Saved at revision {revision}."
    assert _by_id(browser, "meta-version").text == "2"

    # A write from redis-py arrives in the watch pane with its revision and diff.
    assert resp.execute_command("JSON.SET", "users:dora", "$", '{"name": "Dora"}') == "OK"
    assert resp.execute_command("JSON.SET", "users:dora", "$.age", "40") == "OK"
    _wait(browser, lambda d: len(_all(d, "#events li")) >= 3, "three changes")
    events = [
        {
            "revision": item.find_element("css selector", ".revision").text,
            "type": item.find_element("css selector", ".type").text,
            "key": item.find_element("css selector", ".event-key").text,
            "diff": json.loads(item.find_element("css selector", ".diff").text),
        }
        for item in _all(browser, "#events li")
    ]
    dora = http.get("/v1/tables/users/keys/dora")
    assert dora.json() == {"name": "Dora", "age": 40}
    newest = dora.headers["ETag"].strip('"')
    # Newest first: dora's second write, her first, then the console's own patch.
    assert [e["key"] for e in events] == ["users / dora", "users / dora", "users / alice"]
    assert events[0]["revision"] == f"#{newest}" and events[0]["diff"] == {"age": 40}
    assert events[1]["revision"] == f"#{int(newest) - 1}" and events[1]["diff"] == {"name": "Dora"}
    assert events[1]["type"] == "put"
    assert events[2] == {
        "revision": f"#{revision}",
        "type": "merge",
        "key": "users / alice",
        "diff": {"age": 31, "city": "Oslo", "bio": None},
    }
    # The table counts follow the changes.
    _wait(browser, lambda d: _table_counts(d)["users"] == "3", "users' new count")

    # A stale If-Match shows the API's problem+json (the watch paused, so the
    # console does not reload the document before the patch is sent).
    _by_id(browser, "watch-toggle").click()
    behind = http.patch(
        "/v1/tables/users/keys/alice",
        content=b'{"age": 32}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert behind.status_code == 200
    patch = _by_id(browser, "patch")
    patch.clear()
    patch.send_keys('{"age": 99}')
    _by_id(browser, "patch-form").submit()
    _wait(browser, lambda d: _by_id(d, "patch-result").text.startswith("412"), "the 412 problem")
    assert "condition-failed" in _by_id(browser, "patch-result").text
    assert http.get("/v1/tables/users/keys/alice").json()["age"] == 32

    # Single server: no cluster, said so. Metrics: sparklines from /metrics.
    _wait(browser, lambda d: "single node" in _by_id(d, "cluster").text, "the cluster pane")
    _wait(
        browser,
        lambda d: (
            _all(d, "#metrics [data-metric=amber_keys] svg polyline")
            and _all(d, "#metrics [data-metric=amber_keys] .metric-value")[0].text == "65"
        ),
        "the keys chart",
    )
    assert len(_all(browser, "#metrics svg.spark")) >= 3
    resp.close()

    # Every call carried the password: no 401 since the console opened.
    logged = [entry["message"] for entry in browser.get_log("browser")]
    assert not [m for m in logged if "status of 401" in m], logged  # not a port: 38401


def _cluster_view(node: LocalNode) -> dict[str, Any]:
    url = f"http://{node.host}:{node.http_port}/v1/cluster?consistency=stale"
    view = httpx.get(url, headers={"Authorization": f"Bearer {PASSWORD}"}, timeout=10)
    assert view.status_code == 200, view.text
    result: dict[str, Any] = view.json()
    return result


def test_cluster_pane_shows_members_leader_term_and_applied_index(
    tmp_path: Path, browser: Any
) -> None:
    """Against a real 3-node cluster with a password, opened on a follower."""
    cluster = LocalCluster(
        tmp_path / "cluster", 3, base_port=free_base_port(4), extra_args=["--requirepass", PASSWORD]
    )
    cluster.start_all()
    try:
        deadline = time.monotonic() + 20
        while True:
            views = {node.node_id: _cluster_view(node) for node in cluster.nodes}
            leaders = {view["leader"] for view in views.values()}
            if len(leaders) == 1 and None not in leaders:
                break
            assert time.monotonic() < deadline, f"no agreed leader: {views}"
            time.sleep(0.2)
        leader = leaders.pop()
        follower = next(node for node in cluster.nodes if node.node_id != leader)
        writes = redis.Redis(host=follower.host, port=follower.resp_port, password=PASSWORD)
        for n in range(5):
            writes.set(f"c:{n}", n)
        writes.close()
        before = _cluster_view(follower)

        browser.get(f"http://{follower.host}:{follower.http_port}/ui")
        _unlock(browser, PASSWORD)
        _wait(browser, lambda d: len(_all(d, "#cluster tr")) == 4, "the members table")
        summary = _by_id(browser, "cluster").find_element("css selector", "p").text
        shown = re.fullmatch(
            r"(\S+) is (\S+) · leader (\S+) · term (\d+) · commit (\d+) · applied (\d+)"
            r" \(lag (\d+)\) · quorum",
            summary,
        )
        assert shown is not None, summary
        after = _cluster_view(follower)
        assert shown[1] == follower.node_id and shown[2] == "follower"
        assert shown[3] == leader
        assert before["term"] <= int(shown[4]) <= after["term"]
        assert before["applied_index"] <= int(shown[6]) <= after["applied_index"]
        assert int(shown[6]) > 0

        rows = [_texts(row, "td") for row in _all(browser, "#cluster tr")[1:]]
        members = {node.node_id: node for node in cluster.nodes}
        assert sorted(row[0].removesuffix(" (this node)") for row in rows) == sorted(members)
        for member, address, role, connected, _match in rows:
            node_id = member.removesuffix(" (this node)")
            assert (member != node_id) == (node_id == follower.node_id)
            assert address == members[node_id].raft_address
            assert role == ("leader" if node_id == leader else "follower")
            assert connected == "yes"
    finally:
        cluster.stop_all()


def test_docs_render_in_the_browser_from_this_server_alone(
    server_factory: ServerFactory, browser: Any
) -> None:
    """/docs draws Swagger UI's operations, and every resource the page loads is this server's."""
    plain = server_factory(ports=("--port", "0", "--http-port", "0"))
    origin = f"http://{plain.host}:{plain.ports['http']}"
    browser.get(f"{origin}/docs")
    _wait(browser, lambda d: len(_all(d, ".opblock")) >= 10, "Swagger UI's operations")
    assert "Amber" in _by_id(browser, "swagger-ui").text
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert any(url.endswith("/openapi.json") for url in loaded), loaded
    assert all(url.startswith(origin + "/") for url in loaded), loaded
