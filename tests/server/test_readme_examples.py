"""The README's ``redis-cli`` cluster example, run as written against a real server.

It once stored the document with ``SET``: a string holding JSON text, not a
document that ``JSON.GET``, merges, scans with ``where`` and ``amber get`` see.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from server_support import ServerProcess

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
