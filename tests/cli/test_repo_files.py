"""What a fresh clone keeps out of git: the folders ``make run``, the quickstart's embedded
example, ``make cluster`` and ``make chaos`` write."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "path", ["data/x", "data-embedded/users.wal", "cluster-data/n1/wal", "chaos-runs/seed-1/log"]
)
def test_generated_folders_are_ignored(path: str) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "-q", path], check=False, cwd=ROOT, capture_output=True, timeout=30
    )
    assert result.returncode == 0, f"{path} is not ignored by .gitignore"
