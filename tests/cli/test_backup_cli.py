"""``amber backup | restore | export | import`` through the real command line app."""

from __future__ import annotations

import json
import pathlib
import sys

from typer.testing import CliRunner

import amber
from amber.cli import app

sys.path.insert(0, str(pathlib.Path(__file__).parent.parent / "persistence"))
import services

runner = CliRunner()


def make_source(path: pathlib.Path) -> int:
    with amber.open(path, jobs=False) as db:
        for i in range(300):
            db.table("docs").put(f"d{i:03d}", {"i": i})
        db.table("other").put("x", [1, 2])
        return db.revision


def test_backup_and_restore(tmp_path: pathlib.Path) -> None:
    revision = make_source(tmp_path / "src")
    result = runner.invoke(app, ["backup", str(tmp_path / "src"), str(tmp_path / "b.amber")])
    assert result.exit_code == 0, result.output
    assert f"backed up revision {revision}: 2 tables, 301 keys" in result.output
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    result = runner.invoke(app, ["restore", str(tmp_path / "b.amber"), target])
    assert result.exit_code == 0, result.output
    assert f"restored revision {revision}" in result.output
    with amber.open(target, jobs=False) as db:
        assert db.revision == revision
        assert db.table("docs")["d042"] == {"i": 42}


def test_backup_to_s3_and_restore_from_it(tmp_path: pathlib.Path) -> None:
    make_source(tmp_path / "src")
    url = services.s3_url().replace("?", "/backup.amber?", 1)
    result = runner.invoke(app, ["backup", str(tmp_path / "src"), url], env=services.S3_ENV)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["restore", url, str(tmp_path / "dst")], env=services.S3_ENV)
    assert result.exit_code == 0, result.output
    with amber.open(tmp_path / "dst", jobs=False) as db:
        assert len(db.table("docs")) == 300


def test_export_to_stdout_and_import(tmp_path: pathlib.Path) -> None:
    make_source(tmp_path / "src")
    result = runner.invoke(app, ["export", str(tmp_path / "src")])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 301 and lines[0]["table"] == "docs"
    dump = tmp_path / "dump.jsonl"
    result = runner.invoke(app, ["export", str(tmp_path / "src"), "-o", str(dump)])
    assert result.exit_code == 0, result.output
    assert "exported 301 keys" in result.output
    result = runner.invoke(app, ["import", str(tmp_path / "copy"), str(dump), "--batch", "100"])
    assert result.exit_code == 0, result.output
    assert "imported 301 keys" in result.output
    with amber.open(tmp_path / "copy", jobs=False) as db:
        assert db.table("other")["x"] == [1, 2]
        assert db.revision == 4


def flat(text: str) -> str:
    """The output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_errors_are_one_line_and_exit_1(tmp_path: pathlib.Path) -> None:
    make_source(tmp_path / "src")
    with amber.open(tmp_path / "src", jobs=False):
        result = runner.invoke(app, ["backup", str(tmp_path / "src"), str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "open in another process" in flat(result.output)
    assert not (tmp_path / "b").exists()
    runner.invoke(app, ["backup", str(tmp_path / "src"), str(tmp_path / "b")])
    result = runner.invoke(app, ["restore", str(tmp_path / "b"), str(tmp_path / "src")])
    assert result.exit_code == 1
    assert "already holds data" in flat(result.output)
    result = runner.invoke(app, ["restore", str(tmp_path / "missing"), str(tmp_path / "new")])
    assert result.exit_code == 1 and "no backup file" in flat(result.output)
    (tmp_path / "bad.jsonl").write_text("{nope\n")
    result = runner.invoke(app, ["import", str(tmp_path / "new"), str(tmp_path / "bad.jsonl")])
    assert result.exit_code == 1 and "line 1" in flat(result.output)
    assert "Traceback" not in result.output
