"""The README's quickstart and ``redis-cli`` cluster example, run as written against a real server.

The cluster example once stored the document with ``SET``: a string holding
JSON text, not a document that ``JSON.GET``, merges, scans with ``where`` and
``amber get`` see.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from server_support import ServerFactory, ServerProcess

README = Path(__file__).resolve().parents[2] / "README.md"


def _cluster_example() -> list[list[str]]:
    """The ``redis-cli`` lines of the README's Cluster section, comments dropped."""
    text = README.read_text()
    section = text[text.index("## Cluster") :]
    block = section[section.index("```") + 3 :]
    block = block[: block.index("```")]
    return [
        shlex.split(line, comments=True)
        for line in block.splitlines()
        if line.startswith("redis-cli ")
    ]


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_the_cluster_example_stores_a_document(amber_server: ServerProcess) -> None:
    commands = _cluster_example()
    assert commands, "no redis-cli lines in the README's Cluster section"
    outputs = []
    for argv in commands:
        port_at = argv.index("-p") + 1
        argv[port_at] = str(amber_server.port)  # the example's cluster is one server here
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0 and not done.stdout.startswith("(error)"), done
        outputs.append(done.stdout.strip())
    assert outputs[0] == "OK"
    assert json.loads(outputs[-1]) == {"age": 36}
    assert amber_server.redis().execute_command("JSON.TYPE", "users:ada") == b"object"
    assert not any(re.match(r"(?i)^set$", argv[3]) for argv in commands)


def _quickstart_blocks() -> list[str]:
    """The fenced blocks of the README's Quickstart section, in order."""
    text = README.read_text()
    section = text[text.index("## Quickstart") :]
    section = section[: section.index("\n## ", 3)]
    return re.findall(r"^```[a-z]*\n(.*?)^```", section, re.M | re.S)


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_quickstart_works_as_written(server_factory: ServerFactory, tmp_path: Path) -> None:
    """A redis-cli SUBSCRIBE sees every write of the quickstart with its diff.

    Only the ports differ: the server here takes free ones, not 7379/7380.
    """
    blocks = _quickstart_blocks()
    run, watch, writes, embedded = blocks
    assert run.split()[:2] == ["make", "run"]
    server = server_factory()
    http = f"{server.host}:{server.ports['http']}"

    def local(line: str) -> list[str]:
        line = line.replace("-p 7379", f"-p {server.port}").replace("127.0.0.1:7380", http)
        argv = shlex.split(line, comments=True)
        if argv[0] == ".venv/bin/amber":
            argv[:1] = [sys.executable, "-m", "amber.cli"]
        return argv

    (watch_line,) = [line for line in watch.splitlines() if line.strip()]
    assert "SUBSCRIBE '__amber_watch__:users:*'" in watch_line
    lines: queue.Queue[str] = queue.Queue()
    watcher = subprocess.Popen(local(watch_line), stdout=subprocess.PIPE, text=True)
    assert watcher.stdout is not None
    out = watcher.stdout
    reader = threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in out], daemon=True)
    reader.start()
    try:

        def next_line() -> str:
            return lines.get(timeout=15)

        assert [next_line() for _ in range(3)] == ["subscribe", "__amber_watch__:users:*", "1"]

        sent: list[tuple[str, str, object]] = []  # (key, type, body) of each users write
        outputs = []
        env = {**os.environ, "AMBER_URL": f"redis://{server.host}:{server.port}"}
        for line in writes.splitlines():
            argv = local(line)
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, env=env, check=False
            )
            assert done.returncode == 0 and "error" not in done.stdout.lower(), (line, done)
            outputs.append(done.stdout.strip())
            if argv[0] == "redis-cli" and argv[4].startswith("users:"):
                kind = {"JSON.SET": "put", "JSON.MERGE": "merge"}[argv[3].upper()]
                sent.append((argv[4].removeprefix("users:"), kind, json.loads(argv[-1])))
            elif argv[0] == "curl" and "-d" in argv:
                kind = {"PUT": "put", "PATCH": "merge"}[argv[argv.index("-X") + 1]]
                key = argv[argv.index("-X") + 2].rsplit("/", 1)[1]
                sent.append((key, kind, json.loads(argv[argv.index("-d") + 1])))
        assert outputs[:2] == ["OK", "hello"]
        assert json.loads(outputs[-2]) == {"age": 41, "city": "Oslo"}
        assert json.loads(outputs[-1]) == {"name": "Ada", "age": 37, "langs": ["en"]}
        assert len(sent) == 4

        events: list[dict[str, object]] = []
        deadline = time.monotonic() + 15
        while len(events) < len(sent) and time.monotonic() < deadline:
            assert [next_line(), next_line()] == ["message", "__amber_watch__:users:*"]
            events.append(json.loads(next_line()))
        assert [(e["key"], e["type"], e["diff"]) for e in events] == sent
        assert all(e["table"] == "users" for e in events)
    finally:
        watcher.terminate()
        watcher.wait(10)
        reader.join(10)
        out.close()

    # The console and the API docs the quickstart points at.
    for path in ("/ui", "/docs"):
        page = httpx.get(f"http://{http}{path}", timeout=10)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")

    # The embedded example, in a folder of its own.
    done = subprocess.run(
        [sys.executable, "-c", embedded],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'name': 'Ada', 'age': 37} 2"
    assert (tmp_path / "data-embedded").is_dir()
