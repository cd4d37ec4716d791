"""redis-py's own test suite as a compatibility gate (``make compat``).

Downloads the sdist of the redis-py Amber pins (its tests ship in it) into
``.cache/redis-py-<version>/`` (gitignored; only ``tests/`` is extracted),
starts a real ``redis-server`` and a real ``amber serve`` on free loopback
ports (temporary folders; both stopped by pid at the end), and runs pytest on
the command modules of the suite once against each server.

Only tests for commands Amber claims run: the claimed commands are parsed
from README.md (the "Commands" bullet of the server section); each test maps
to the commands its name mentions and the commands its body (and the helpers
it calls) sends through redis-py (``r.set(…)`` → SET, ``r.json().get(…)`` →
JSON.GET, ``execute_command("CLIENT", "KILL", …)`` → CLIENT KILL). A test
with an unclaimed command counts as "not claimed"; one that sends no command
("client only": parsers, pools, mocks) does not run either.

It prints a table per module (selected, passed on Redis, passed on Amber,
differences) and every difference — passed on Redis and failed on Amber, or
failed on Redis and passed on Amber; for modules or tests Redis 7.0.15 cannot
answer (no RedisJSON module; a test it skips by version), every Amber failure
— with a one-line reason, and writes the same as JSON. A difference listed in
``KNOWN`` (a documented design difference) shows as "documented", a failure
that says nothing about the server (a test that opens its own client on
localhost:6379) as "not applicable"; the exit status is 0 only when every
difference is documented. A field of INFO that redis-py's conftest needs and
the server lacks is filled in by a small plugin (``SHIM``) and counted as a
difference.

    python bench/redis_py_compat.py [--out bench/results/redis_py_compat.json]
                                    [--modules test_commands.py,…] [--timeout 900]
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent


def pinned_redis_py() -> str:
    """The redis-py version pyproject.toml pins (its tests must match the client)."""
    pin = re.search(r'"redis==([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    if not pin:
        raise SystemExit("pyproject.toml pins no redis==<version>")
    return pin.group(1)


REDIS_PY_VERSION = pinned_redis_py()
CACHE = ROOT / ".cache" / f"redis-py-{REDIS_PY_VERSION}"
REDIS_SERVER = "/usr/bin/redis-server"
MODULES = (
    "test_commands.py",
    "test_json.py",
    "test_pipeline.py",
    "test_pubsub.py",
    "test_connection.py",
    "test_encoding.py",
    "test_keyspace_notifications.py",
)
# Modules whose commands redis-server 7.0.15 does not have: Amber's failures
# there are differences whatever Redis answered.
NO_REFERENCE = {"test_json.py": "redis-server 7.0.15 has no RedisJSON module"}
# Modules the selected tests need beyond pytest and redis (import name → pip
# requirement), installed only when missing. pytest-timeout and ujson are pinned
# in pyproject's [test] extras; packaging comes with pytest.
TEST_DEPS = {
    "packaging": "packaging",
    "pytest_timeout": "pytest-timeout==2.4.0",
    "ujson": "ujson==6.1.0",  # test_json.py's custom-decoder test
}
# redis-py's pytest markers (from its pyproject.toml, which is not extracted).
MARKERS = (
    "fixed_client", "redismod", "pipeline", "onlycluster", "onlynoncluster", "ssl", "asyncio",
    "replica", "experimental", "cp_integration", "no_mock_connections", "multidb_integration",
    "forked",
)  # fmt: skip
PER_TEST_TIMEOUT = 30  # seconds, as redis-py's own configuration
# A pytest plugin (written next to the tests, loaded with -p) that lets
# redis-py's conftest start against a server whose INFO lacks a field its
# pytest_sessionstart indexes (Amber's INFO has no `cluster_enabled`): it fills
# the field in and says so at the top of the run's log. Every such shim is a
# difference and is reported as one.
SHIM = '''"""Written by bench/redis_py_compat.py: fills INFO fields conftest indexes."""
import os
import sys

import pytest

DEFAULTS = {"cluster_enabled": False, "arch_bits": 64}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    conftest = sys.modules.get("tests.conftest")
    if conftest is None or getattr(conftest, "_amber_shim", False):
        return
    original = conftest._get_info

    def _get_info(url):
        info = original(url)
        for key, value in DEFAULTS.items():
            if key not in info:
                with open(os.environ["AMBER_SHIM_LOG"], "a") as log:
                    log.write(f"INFO has no {key} field (redis-py's conftest reads it)\\n")
                info[key] = value
        return info

    conftest._get_info = _get_info
    conftest._amber_shim = True
'''

# Documented design differences (README, "Server: amber serve and the Redis
# protocol"): test id (a prefix up to "[" also matches its parametrized ids)
# → the reason. A difference listed here shows as "documented".
VALUES = "SET k v stores a JSON string: values must be UTF-8 (binary data goes base64-encoded)"
DB0 = "DB 0 only (SELECT 0)"
SUBSET = (
    "Amber implements the commands README lists (no lists, sets, sorted sets, streams …): "
    "COMMAND, CONFIG GET describe only those"
)
NO_EVICTION = (
    "Amber keeps every key (no maxmemory, no eviction): CONFIG SET refuses maxmemory as "
    "immutable rather than accept a setting it would ignore"
)
JSON_PATHS = "JSON paths: the root and member paths only; wildcards, `..`, filters, slices error"
# Failures that say nothing about the server under test (not gated).
NA = "not applicable"
NOT_APPLICABLE = {
    r"connecting to localhost:6379": "the test opens its own client on localhost:6379",
}
KNOWN: dict[str, str] = {
    "tests/test_commands.py::TestRedisCommands::test_select": DB0,
    "tests/test_commands.py::TestRedisCommands::test_copy_to_another_database": DB0,
    "tests/test_commands.py::TestRedisCommands::test_command_list": SUBSET,
    "tests/test_commands.py::TestRedisCommands::test_command": SUBSET,
    "tests/test_commands.py::TestRedisCommands::test_config_get_multi_params": SUBSET,
    "tests/test_commands.py::TestRedisCommands::test_config_set_multi_params": NO_EVICTION,
    "tests/test_json.py::test_json_delete_with_dollar": JSON_PATHS,
    "tests/test_json.py::test_json_forget_with_dollar": JSON_PATHS,
    "tests/test_json.py::test_json_mget_dollar": JSON_PATHS,
    "tests/test_json.py::test_type_dollar": JSON_PATHS,
    **{
        f"tests/test_json.py::test_{name}_dollar": JSON_PATHS
        for name in (
            "strappend",
            "strlen",
            "arrappend",
            "arrinsert",
            "arrlen",
            "arrpop",
            "arrtrim",
            "objkeys",
            "objlen",
            "clear",
            "toggle",
            "resp",
            "arrindex",
        )
    },
    "tests/test_encoding.py::TestEncodingErrors::test_ignore": VALUES,
    "tests/test_encoding.py::TestEncodingErrors::test_replace": VALUES,
}

CLIENT_RECEIVER = re.compile(
    r"(?:self\.)?(?:r\d*|redis\w*|client\w*|decoded_r|stack_r|pipe\w*|p\d*|pubsub\w*|rc|conn)"
)
# receiver.method( — or a chained ).method( — or receiver.method passed as a value
CALL = re.compile(r"([A-Za-z_][\w.]*(?:\(\))?|\))\s*\.([a-z_][a-z0-9_]*)\b(\s*\()?")
EXECUTE = re.compile(
    r"execute_command\(\s*[\"']([A-Za-z_.]+)[\"'](?:\s*,\s*[\"']([A-Za-z_-]+)[\"'])?"
)
JSON_COMMANDS = {
    "set": "JSON.SET", "set_file": "JSON.SET", "set_path": "JSON.SET", "get": "JSON.GET",
    "mget": "JSON.MGET", "mset": "JSON.MSET", "delete": "JSON.DEL", "forget": "JSON.FORGET",
    "merge": "JSON.MERGE", "type": "JSON.TYPE", "numincrby": "JSON.NUMINCRBY",
    "nummultby": "JSON.NUMMULTBY", "strappend": "JSON.STRAPPEND", "strlen": "JSON.STRLEN",
    "toggle": "JSON.TOGGLE", "clear": "JSON.CLEAR", "arrappend": "JSON.ARRAPPEND",
    "arrindex": "JSON.ARRINDEX", "arrinsert": "JSON.ARRINSERT", "arrlen": "JSON.ARRLEN",
    "arrpop": "JSON.ARRPOP", "arrtrim": "JSON.ARRTRIM", "objkeys": "JSON.OBJKEYS",
    "objlen": "JSON.OBJLEN", "resp": "JSON.RESP", "debug": "JSON.DEBUG",
}  # fmt: skip
# redis-py methods whose name is not the command's.
METHOD_ALIASES = {
    "delete": "DEL", "scan_iter": "SCAN", "hscan_iter": "HSCAN", "sscan_iter": "SSCAN",
    "zscan_iter": "ZSCAN", "client_kill_filter": "CLIENT|KILL", "client_tracking_on":
    "CLIENT|TRACKING", "client_tracking_off": "CLIENT|TRACKING", "pubsub": "",
    "execute_command": "", "pipeline": "", "transaction": "", "json": "",
    "register_script": "EVALSHA",
}  # fmt: skip

# Words in test names that stand for a command the test reaches indirectly.
WORD_ALIASES = {"shard": "SSUBSCRIBE", "sharded": "SSUBSCRIBE", "spublish": "SPUBLISH"}


@dataclass
class Vocabulary:
    """Redis' command names (``name`` and ``container|sub``), lower case."""

    names: set[str]
    containers: set[str]
    # redis-py's command methods (newer commands than the server's, e.g. DELEX)
    client_methods: set[str] = field(default_factory=set)

    @classmethod
    def from_server(cls, port: int) -> Vocabulary:
        with redis.Redis(port=port, decode_responses=True) as r:
            names = {str(n).lower() for n in r.command_list()}
        containers = {n.split("|", 1)[0] for n in names if "|" in n}
        methods = {
            n
            for n in dir(redis.Redis)
            if not n.startswith("_")
            and getattr(getattr(redis.Redis, n), "__module__", "").startswith("redis.commands")
        }
        return cls(names, containers, methods)

    def method(self, name: str) -> str | None:
        """The command a redis-py method sends, or None."""
        if name in METHOD_ALIASES:
            return METHOD_ALIASES[name] or None
        if name in self.names:
            return name.upper()
        head, _, rest = name.partition("_")
        if head in self.containers and rest:
            parts = rest.split("_")
            for n in range(len(parts), 0, -1):
                sub = "-".join(parts[:n])
                if f"{head}|{sub}" in self.names:
                    return f"{head}|{sub}".upper()
            return head.upper()
        if name in self.client_methods:  # a command the reference server does not know
            return name.upper()
        return None

    def words(self, words: list[str]) -> set[str]:
        """The commands a test name's words mention."""
        found = {WORD_ALIASES[w] for w in words if w in WORD_ALIASES}
        for i, w in enumerate(words):
            if w in self.containers:
                nxt = words[i + 1] if i + 1 < len(words) else ""
                found.add(f"{w}|{nxt}".upper() if f"{w}|{nxt}" in self.names else w.upper())
            elif w in self.names:
                found.add(w.upper())
        return found


@dataclass
class Claims:
    """What README.md's "Commands" bullet claims."""

    whole: set[str] = field(default_factory=set)  # every subcommand (or a plain command)
    subs: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def from_readme(cls, readme: Path, vocab: Vocabulary) -> Claims:
        text = readme.read_text(encoding="utf-8")
        m = re.search(r"^- \*\*Commands\*\*:(.*?)(?=^- \*\*|^\S)", text, re.S | re.M)
        if not m:
            raise SystemExit("README.md has no '- **Commands**:' bullet")
        claims = cls()
        for name, opts in re.findall(r"\b([A-Z][A-Z0-9_.]*)(?:\s*\(([^)]*)\))?", m.group(1)):
            if name.lower() in vocab.containers and opts:
                claims.subs.setdefault(name, set()).update(opts.split())
            else:
                claims.whole.add(name)
        return claims

    def claimed(self, command: str) -> bool:
        head, _, sub = command.partition("|")
        if head in self.whole:
            return True
        return head in self.subs and (not sub or sub in self.subs[head])

    def commands(self) -> list[str]:
        return sorted(self.whole) + [f"{h} {s}" for h, ss in self.subs.items() for s in sorted(ss)]


def test_sources(path: Path) -> dict[str, str]:
    """``Class::test`` or ``test`` → the test's source plus the helpers it calls."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    functions = {
        n.name: ast.get_source_segment(text, n) or ""
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    }

    def expand(source: str, scope: dict[str, str]) -> str:
        seen: set[str] = set()
        todo = [source]
        out = []
        while todo:
            src = todo.pop()
            out.append(src)
            for name in re.findall(r"(?:self\.)?(\w+)\(", src):
                # make_* helpers build data for every variant; the test's name says which
                if name in scope and name not in seen and not name.startswith(("test_", "make_")):
                    seen.add(name)
                    todo.append(scope[name])
        return "\n".join(out)

    result: dict[str, str] = {}

    def visit_class(node: ast.ClassDef, prefix: str) -> None:
        methods = {
            n.name: ast.get_source_segment(text, n) or ""
            for n in node.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        scope = {**functions, **methods}
        for name, src in methods.items():
            if name.startswith("test"):
                result[f"{prefix}{node.name}::{name}"] = expand(src, scope)
        for inner in node.body:
            if isinstance(inner, ast.ClassDef):
                visit_class(inner, f"{prefix}{node.name}::")

    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            visit_class(node, "")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            result[node.name] = expand(functions[node.name], functions)
    return result


def commands_of(test: str, source: str, module: str, vocab: Vocabulary) -> set[str]:
    """The commands a test's name mentions and its body sends."""
    name = test.rsplit("::", 1)[-1].removeprefix("test_")
    words = name.split("_")
    found = vocab.words(words)
    json_module = module == "test_json.py"
    if json_module:  # test_json.py names its tests after JSON.* commands
        found = {f"JSON.{c}" for c in found if c.lower() in JSON_COMMANDS}
        for word in words:
            w = word.removeprefix("json")
            if w in JSON_COMMANDS:
                found.add(JSON_COMMANDS[w])
    for receiver, method, called in CALL.findall(source):
        if receiver == ")" and not called:
            continue
        if receiver.endswith("json()") or (json_module and receiver in ("p", "pipe", ")")):
            if method in JSON_COMMANDS:
                found.add(JSON_COMMANDS[method])
        elif receiver == ")" or CLIENT_RECEIVER.fullmatch(receiver):
            command = vocab.method(method)
            if command:
                found.add(command)
    for name, sub in EXECUTE.findall(source):
        head = name.lower()
        if head in vocab.containers and sub and f"{head}|{sub.lower()}" in vocab.names:
            found.add(f"{head}|{sub.lower()}".upper())
        elif head in vocab.names or head.startswith(("json.", "amber.")):
            found.add(head.upper())
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_ping(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with redis.Redis(port=port, socket_timeout=1) as r:
                if r.ping():
                    return
        except redis.RedisError:
            time.sleep(0.1)
    raise RuntimeError(f"no server answers PING on port {port}")


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--save", "", "--appendonly", "no", "--daemonize", "no",
            "--logfile", str(folder / "redis.log"),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_ping(port)
    return proc, port


def start_amber(folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (folder / "amber.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "amber.cli", "serve", "--data", str(folder / "data"),
            "--port", str(port), "--http-port", "-1", "--kvtext-port", "-1",
            "--bind", "127.0.0.1",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    log.close()
    wait_for_ping(port)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def ensure_tests() -> None:
    """Download the pinned sdist into CACHE once and extract tests/ only."""
    if (CACHE / "tests" / "conftest.py").exists():
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"redis-{REDIS_PY_VERSION}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                "--no-binary", ":all:", f"redis=={REDIS_PY_VERSION}", "-d", str(CACHE),
            ],
            check=True, timeout=300,
        )  # fmt: skip
    prefix = f"redis-{REDIS_PY_VERSION}/tests/"
    with tarfile.open(sdist) as tar:
        members = []
        for m in tar.getmembers():
            if m.name.startswith(prefix) and (m.isfile() or m.isdir()):
                m.name = m.name[len(f"redis-{REDIS_PY_VERSION}/") :]
                members.append(m)
        tar.extractall(CACHE, members=members, filter="data")


def ensure_deps() -> list[str]:
    missing = [req for mod, req in TEST_DEPS.items() if importlib.util.find_spec(mod) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)
    return missing


def write_ini() -> Path:
    ini = CACHE / "pytest.ini"
    lines = ["[pytest]", f"timeout = {PER_TEST_TIMEOUT}", "markers ="]
    lines += [f"    {m}: redis-py marker" for m in MARKERS]
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (CACHE / "amber_compat_shim.py").write_text(SHIM, encoding="utf-8")
    return ini


def pytest_args(ini: Path, port: int) -> list[str]:
    url = f"redis://127.0.0.1:{port}/0"
    return [
        sys.executable, "-m", "pytest", "-c", str(ini), "--rootdir", str(CACHE),
        "-p", "no:cacheprovider", "-p", "amber_compat_shim",
        "--redis-url", url, "--redis-mod-url", url,
    ]  # fmt: skip


def pytest_env(shim_log: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(CACHE)}
    env["AMBER_SHIM_LOG"] = str(shim_log or os.devnull)
    return env


def collect(ini: Path, port: int, modules: list[str]) -> list[str]:
    out = subprocess.run(
        [*pytest_args(ini, port), "--collect-only", "-q", *[f"tests/{m}" for m in modules]],
        cwd=CACHE, env=pytest_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    ids = [line for line in out.stdout.splitlines() if line.startswith("tests/") and "::" in line]
    if not ids:
        raise SystemExit(f"pytest collected nothing:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
    return ids


@dataclass
class Outcome:
    status: str  # passed | failed | skipped | missing
    reason: str = ""


def one_line(text: str) -> str:
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line[:200]


def run_suite(ini: Path, port: int, ids: list[str], junit: Path, timeout: int) -> int:
    for old in (junit, junit.with_suffix(".shim")):
        old.unlink(missing_ok=True)
    argfile = junit.with_suffix(".args")
    argfile.write_text("\n".join(ids) + "\n", encoding="utf-8")
    cmd = ["timeout", str(timeout), *pytest_args(ini, port)]
    cmd += ["-q", "-rN", "--junitxml", str(junit), f"@{argfile}"]
    log = junit.with_suffix(".log")
    with log.open("wb") as f:
        done = subprocess.run(
            cmd,
            cwd=CACHE,
            env=pytest_env(junit.with_suffix(".shim")),
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        )
    return done.returncode


def read_junit(junit: Path) -> dict[str, Outcome]:
    results: dict[str, Outcome] = {}
    if not junit.exists():
        return results
    for case in ET.parse(junit).getroot().iter("testcase"):
        parts = case.get("classname", "").split(".")
        # tests.test_commands.TestRedisCommands → tests/test_commands.py::TestRedisCommands
        mod_end = next((i for i, p in enumerate(parts) if p.startswith("test_")), len(parts) - 1)
        path = "/".join(parts[: mod_end + 1]) + ".py"
        node = "::".join([path, *parts[mod_end + 1 :], case.get("name", "")])
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            msg = bad.get("message") or bad.text or ""
            results[node] = Outcome("failed", one_line(msg))
        elif case.find("skipped") is not None:
            results[node] = Outcome("skipped", one_line(case.find("skipped").get("message", "")))  # type: ignore[union-attr]
        else:
            results[node] = Outcome("passed")
    return results


def known_reason(node: str) -> str | None:
    for key, reason in KNOWN.items():
        if node == key or node.startswith(key + "["):
            return reason
    return None


def compare(module: str, node: str, red: Outcome, amb: Outcome) -> tuple[str, str] | None:
    """(kind, reason) when the two runs differ."""
    for pattern, why in NOT_APPLICABLE.items():
        if amb.status == "failed" and re.search(pattern, amb.reason):
            return f"{NA}: {why}", amb.reason
    if module in NO_REFERENCE or red.status == "skipped":
        if amb.status == "failed":
            why = NO_REFERENCE.get(module) or f"Redis skipped it: {red.reason}"
            return f"failed on Amber (no reference: {why})", amb.reason
        return None
    if red.status == "passed" and amb.status == "failed":
        return "passed on Redis, failed on Amber", amb.reason
    if red.status == "failed" and amb.status == "passed":
        return "failed on Redis, passed on Amber", red.reason
    if amb.status == "missing" and red.status != "missing":
        return "did not run on Amber (run cut short)", ""
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Run redis-py's own tests for the commands Amber claims against "
        "redis-server and amber serve, and compare."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench/results/redis_py_compat.json",
        help="the JSON report; junit XML and logs go to a folder of its name beside it",
    )
    parser.add_argument("--modules", default=",".join(MODULES), help="comma-separated")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per pytest run")
    parser.add_argument("-k", dest="only", default="", help="keep only ids containing this")
    parser.add_argument(
        "--list", action="store_true", help="print each test's commands and class, run nothing"
    )
    args = parser.parse_args()
    modules = [m.strip() for m in args.modules.split(",") if m.strip()]
    if not shutil.which(REDIS_SERVER):
        raise SystemExit(f"{REDIS_SERVER} not found")
    if redis.__version__ != REDIS_PY_VERSION:
        raise SystemExit(
            f"redis-py {redis.__version__} is installed, the pin is {REDIS_PY_VERSION}"
        )

    ensure_tests()
    installed = ensure_deps()
    ini = write_ini()
    work = Path(tempfile.mkdtemp(prefix="amber-compat-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        rproc, rport = start_redis(work)
        procs.append(rproc)
        aproc, aport = start_amber(work)
        procs.append(aproc)
        vocab = Vocabulary.from_server(rport)
        claims = Claims.from_readme(ROOT / "README.md", vocab)

        ids = collect(ini, rport, modules)
        sources = {m: test_sources(CACHE / "tests" / m) for m in modules}
        selected: list[str] = []
        per_module: dict[str, Counter[str]] = {m: Counter() for m in modules}
        unclaimed_use: Counter[str] = Counter()
        for node in ids:
            path, _, rest = node.partition("::")
            module = path.removeprefix("tests/")
            key = rest.split("[", 1)[0]
            cmds = commands_of(key, sources[module].get(key, ""), module, vocab)
            if "Cluster" in key.split("::")[0]:  # cluster clients: not this gate
                cmds.add("CLUSTER")
            if args.list:
                kind = "client only" if not cmds else "claimed" if all(
                    claims.claimed(c) for c in cmds) else "NOT CLAIMED"  # fmt: skip
                print(f"{kind:12} {node}  {' '.join(sorted(cmds))}")
            if not cmds:
                per_module[module]["client only"] += 1
            elif all(claims.claimed(c) for c in cmds):
                if args.only in node:
                    selected.append(node)
                    per_module[module]["selected"] += 1
            else:
                per_module[module]["not claimed"] += 1
                unclaimed_use.update(c.replace("|", " ") for c in cmds if not claims.claimed(c))

        if args.list:
            return 0
        runs: dict[str, dict[str, Outcome]] = {}
        codes: dict[str, int] = {}
        logs = args.out.parent / args.out.stem
        logs.mkdir(parents=True, exist_ok=True)
        for server, port in (("redis", rport), ("amber", aport)):
            junit = logs / f"{server}.xml"
            start = time.monotonic()
            codes[server] = run_suite(ini, port, selected, junit, args.timeout)
            runs[server] = read_junit(junit)
            print(
                f"{server}: pytest exit {codes[server]}, {len(runs[server])} results, "
                f"{time.monotonic() - start:.0f} s (log {junit.with_suffix('.log')})",
                flush=True,
            )
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)

    missing = Outcome("missing")
    differences: list[dict[str, str]] = []
    for server in ("redis", "amber"):
        shim = logs / f"{server}.shim"
        for line in sorted(set(shim.read_text().splitlines())) if shim.exists() else []:
            differences.append(
                {
                    "test": "tests/conftest.py::pytest_sessionstart",
                    "kind": f"{server} needed the harness shim",
                    "reason": line,
                    "status": "difference",
                    "documented": "",
                }
            )
    cut_short = [s for s, rc in codes.items() if rc not in (0, 1)]
    rows: list[dict[str, object]] = []
    skip_mismatch: list[str] = []
    for module in modules:
        nodes = [n for n in selected if n.startswith(f"tests/{module}::")]
        counts = per_module[module]
        row: dict[str, object] = {
            "module": module,
            "selected": len(nodes),
            "not_claimed": counts["not claimed"],
            "client_only": counts["client only"],
            "redis_passed": sum(runs["redis"].get(n, missing).status == "passed" for n in nodes),
            "amber_passed": sum(runs["amber"].get(n, missing).status == "passed" for n in nodes),
            "redis_skipped": sum(runs["redis"].get(n, missing).status == "skipped" for n in nodes),
            "amber_skipped": sum(runs["amber"].get(n, missing).status == "skipped" for n in nodes),
            "differences": 0,
            "documented": 0,
        }
        for n in nodes:
            red, amb = runs["redis"].get(n, missing), runs["amber"].get(n, missing)
            if red.status == "passed" and amb.status == "skipped":
                skip_mismatch.append(f"{n}: {amb.reason}")
            found = compare(module, n, red, amb)
            if not found:
                continue
            doc = known_reason(n)
            status = NA if found[0].startswith(NA) else "documented" if doc else "difference"
            differences.append(
                {
                    "test": n,
                    "kind": found[0],
                    "reason": found[1],
                    "status": status,
                    "documented": doc or "" if status == "documented" else "",
                }
            )
            col = {"documented": "documented", "difference": "differences"}.get(status)
            if col:
                row[col] = int(str(row[col])) + 1
        rows.append(row)

    header = ("module", "selected", "not claimed", "client only", "Redis passed", "Amber passed",
              "Redis skipped", "Amber skipped", "differences", "documented")  # fmt: skip
    keys = ("module", "selected", "not_claimed", "client_only", "redis_passed", "amber_passed",
            "redis_skipped", "amber_skipped", "differences", "documented")  # fmt: skip
    print()
    print("| " + " | ".join(header) + " |")
    print("| --- |" + " ---: |" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    total = {k: sum(int(str(r[k])) for r in rows) for k in keys[1:]}
    print("| total | " + " | ".join(str(total[k]) for k in keys[1:]) + " |")
    for status in ("difference", "documented", NA):
        items = [d for d in differences if d["status"] == status]
        if items:
            print(f"\n{status.upper()} ({len(items)}):")
        shown = [d for d in items if not d["kind"].startswith("did not run")]
        if len(shown) < len(items):
            print(f"  {len(items) - len(shown)} tests did not run on Amber (run cut short)")
        for d in shown:
            extra = f" — documented: {d['documented']}" if d["documented"] else ""
            print(f"  {d['test']}\n      {d['kind']}: {d['reason']}{extra}")
    if skip_mismatch:
        print(f"\nPassed on Redis, skipped on Amber ({len(skip_mismatch)}, not gated):")
        for s in skip_mismatch:
            print(f"  {s}")
    stale = [k for k in KNOWN if not any(d["test"].startswith(k) for d in differences)]
    if stale:
        print(f"\nKNOWN entries that no longer differ (or were not selected): {', '.join(stale)}")
    print("\nMost used unclaimed commands (tests not run): " + ", ".join(
        f"{c} {n}" for c, n in unclaimed_use.most_common(15)))  # fmt: skip

    undocumented = [d for d in differences if d["status"] == "difference"]
    report = {
        "redis_py": REDIS_PY_VERSION,
        "redis_server": redis_version(),
        "command": " ".join(["python", "bench/redis_py_compat.py", *sys.argv[1:]]),
        "claimed_commands": claims.commands(),
        "modules": rows,
        "total": total,
        "differences": differences,
        "passed_on_redis_skipped_on_amber": skip_mismatch,
        "pytest_exit_codes": codes,
        "deps_installed": installed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out} (junit XML and pytest logs in {logs})")
    if cut_short:
        print(f"pytest did not finish on: {', '.join(cut_short)} (exit codes {codes})")
        return 2
    return 1 if undocumented else 0


def redis_version() -> str:
    out = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, check=False)
    m = re.search(r"v=(\S+)", out.stdout)
    return m.group(1) if m else "?"


if __name__ == "__main__":
    sys.exit(main())
