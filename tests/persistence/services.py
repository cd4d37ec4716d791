"""Real services for the backend tests: a PostgreSQL server and an S3 (moto) server.

Each is started once per test process, on 127.0.0.1 and a free port, in a
temporary folder, and stopped by its own pid when the process exits:

- PostgreSQL: Debian's binaries (``/usr/lib/postgresql/*/bin`` or ``PATH``),
  ``initdb`` + ``pg_ctl start``; as root they run as the ``postgres`` user
  (``runuser``), since PostgreSQL refuses to run as root. Missing binaries
  skip the tests that need it, with the reason.
- S3: moto's ``ThreadedMotoServer`` reached by boto3 over HTTP.

``bench/backends.py`` uses them too.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

#: boto3 reads these; moto accepts any.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "amber-test",
    "AWS_SECRET_ACCESS_KEY": "amber-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}
BUCKET = "amber-tests"

_postgres: dict[str, Any] = {}
_s3: dict[str, Any] = {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bindir() -> str | None:
    """The folder holding ``initdb`` and ``pg_ctl``, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return os.path.dirname(found[0])
    initdb = shutil.which("initdb")
    return os.path.dirname(os.path.realpath(initdb)) if initdb else None


def _as_user() -> list[str]:
    """Prefix that runs a command as a non-root user when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without runuser: cannot start PostgreSQL")
    return [runuser, "-u", "postgres", "--"]


def postgres_url() -> str:
    """The URL of a running test PostgreSQL server (started on first call).

    Raises ``RuntimeError`` with the reason when it cannot be started; tests
    call :func:`postgres_or_skip` instead.
    """
    if "url" in _postgres:
        url: str = _postgres["url"]
        return url
    if "error" in _postgres:
        raise RuntimeError(_postgres["error"])
    bindir = postgres_bindir()
    if bindir is None:
        _postgres["error"] = "PostgreSQL binaries (initdb, pg_ctl) are not installed"
        raise RuntimeError(_postgres["error"])
    root = tempfile.mkdtemp(prefix="amber-pg-")
    data = os.path.join(root, "data")
    prefix = _as_user()
    if prefix:
        os.chmod(root, 0o755)
        shutil.chown(root, "postgres", "postgres")
    port = free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -k {root} "
        "-c fsync=on -c max_connections=200 -c shared_buffers=64MB"
    )
    commands = [
        [*prefix, f"{bindir}/initdb", "-D", data, "-U", "amber", "-A", "trust", "-E", "UTF8"],
        [*prefix, f"{bindir}/pg_ctl", "-D", data, "-l", f"{root}/log", "-o", options, "-w"],
    ]
    commands[1] += ["-t", "60", "start"]
    try:
        for command in commands:
            subprocess.run(
                command, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120
            )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        out = getattr(exc, "stdout", b"") or b""
        _postgres["error"] = f"could not start PostgreSQL: {exc}: {out.decode(errors='replace')}"
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(_postgres["error"]) from None
    with open(os.path.join(data, "postmaster.pid")) as f:
        pid = int(f.readline())
    _postgres.update(url=f"postgresql://amber@127.0.0.1:{port}/postgres", pid=pid, root=root)
    atexit.register(_stop_postgres)
    return postgres_url()


def _stop_postgres() -> None:
    pid = _postgres.pop("pid", None)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # "fast" shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    root = _postgres.pop("root", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


def postgres_or_skip() -> str:
    """:func:`postgres_url`, or skip the test when PostgreSQL is not installed here.

    Only missing binaries skip, and never under CI (``.ci/run`` installs
    them); binaries that fail to start fail the test with PostgreSQL's output.
    """
    import pytest

    if postgres_bindir() is None and not os.environ.get("CI"):
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) are not installed: "
            "apt-get install postgresql (as .ci/run does)"
        )
    return postgres_url()


def s3_endpoint() -> str:
    """``http://127.0.0.1:PORT`` of a running moto S3 server with :data:`BUCKET`."""
    if "endpoint" in _s3:
        endpoint: str = _s3["endpoint"]
        return endpoint
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    for name, value in S3_ENV.items():
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    _s3.update(server=server, endpoint=endpoint)
    atexit.register(server.stop)
    client = s3_client()
    client.create_bucket(Bucket=BUCKET)
    return endpoint


def s3_client() -> Any:
    """One boto3 client on the test server, shared by the tests of this process."""
    if "client" not in _s3:
        import boto3

        _s3["client"] = boto3.session.Session().client(
            "s3",
            endpoint_url=s3_endpoint(),
            region_name="us-east-1",
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        )
        atexit.register(_s3["client"].close)
    return _s3["client"]


def s3_url(prefix: str | None = None, lease_seconds: float = 1.5) -> str:
    """A fresh prefix in the test bucket as an ``s3://`` URL."""
    prefix = prefix or f"t-{uuid.uuid4().hex[:12]}"
    return f"s3://{BUCKET}/{prefix}?endpoint_url={s3_endpoint()}&lease_seconds={lease_seconds}"


def fresh_postgres_url() -> str:
    """The test server's URL with a table prefix of its own (a fresh, empty database)."""
    return f"{postgres_or_skip()}?table_prefix=t{uuid.uuid4().hex[:12]}_"


def service_env() -> dict[str, str]:
    """Environment for child processes that use the services."""
    return {**os.environ, **S3_ENV}
