"""Data commands against a running server: get put merge del scan watch info.

Every command takes ``--url`` (default ``redis://127.0.0.1:7379``, or the
``AMBER_URL`` environment variable) and ``--password``. Values are given and
printed as JSON; ``watch`` prints one JSON line per event.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError

from .. import errors
from ..client import DEFAULT_URL, Client
from .app import app, fail

Url = Annotated[str, typer.Option("--url", envvar="AMBER_URL", help="The server's RESP URL.")]
Password = Annotated[
    str | None,
    typer.Option(
        "--password", envvar="AMBER_PASSWORD", help="The server's password (--requirepass)."
    ),
]
Table = Annotated[str, typer.Argument(help="Table name.")]
Key = Annotated[str, typer.Argument(help="Key in the table.")]


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str), flush=True)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"value is not valid JSON: {exc}")


def _shown(url: str) -> str:
    """``url`` without a password in it, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _auth_failure(url: str, password: str | None) -> str:
    """What to do when the server wants a password, or refused the one given."""
    if urllib.parse.urlsplit(url).password is not None:
        return f"{_shown(url)} refused the password in the URL"
    if password:
        return (
            f"{url} refused the password (from --password or AMBER_PASSWORD): check it "
            "against the server's --requirepass / --requirepass-file"
        )
    return (
        f"{url} requires a password: pass --password PASSWORD, set AMBER_PASSWORD, "
        "or put it in the URL (redis://:PASSWORD@host:port)"
    )


@contextmanager
def _client(url: str, password: str | None) -> Iterator[Client]:
    try:
        with Client(url, password) as client:
            yield client
    except errors.AmberError as exc:
        fail(str(exc))
    except AuthenticationError:
        fail(_auth_failure(url, password))
    except RedisConnectionError as exc:
        fail(f"cannot reach {_shown(url)}: {exc}")
    except RedisError as exc:
        if str(exc).startswith(("NOAUTH", "WRONGPASS")):
            fail(_auth_failure(url, password))
        fail(f"{type(exc).__name__}: {exc}")


@app.command("get")
def get(table: Table, key: Key, url: Url = DEFAULT_URL, password: Password = None) -> None:
    """Print a key's document as JSON (exit code 1 if absent)."""
    with _client(url, password) as client:
        missing = object()
        value = client.table(table).get(key, missing)
    if value is missing:
        fail(f"key {key!r} not found in table {table!r}")
    _print(value)


@app.command("put")
def put(  # noqa: PLR0917 - typer maps parameters to options
    table: Table,
    key: Key,
    value: Annotated[str, typer.Argument(help="The document, as JSON.")],
    ttl: Annotated[float | None, typer.Option(help="Expire after this many seconds.")] = None,
    if_absent: Annotated[bool, typer.Option("--if-absent", help="Only create.")] = False,
    url: Url = DEFAULT_URL,
    password: Password = None,
) -> None:
    """Set a key to a JSON document; prints the revision."""
    document = _parse(value)
    with _client(url, password) as client:
        revision = client.table(table).put(key, document, ttl=ttl, if_absent=if_absent)
    _print({"revision": revision})


@app.command("merge")
def merge(
    table: Table,
    key: Key,
    patch: Annotated[str, typer.Argument(help="An RFC 7396 merge patch, as JSON.")],
    url: Url = DEFAULT_URL,
    password: Password = None,
) -> None:
    """Merge a JSON patch into a key (null removes a member); prints the result."""
    document = _parse(patch)
    with _client(url, password) as client:
        result = client.table(table).merge(key, document)
    _print(result)


@app.command("del")
def delete(table: Table, key: Key, url: Url = DEFAULT_URL, password: Password = None) -> None:
    """Delete a key (exit code 1 if it did not exist)."""
    with _client(url, password) as client:
        existed = client.table(table).delete(key)
    if not existed:
        fail(f"key {key!r} not found in table {table!r}")
    _print({"deleted": key})


@app.command("scan")
def scan(
    table: Table,
    prefix: Annotated[str | None, typer.Option(help="Only keys starting with this.")] = None,
    limit: Annotated[int | None, typer.Option(min=0, help="At most this many items.")] = None,
    url: Url = DEFAULT_URL,
    password: Password = None,
) -> None:
    """Print one JSON line per key, {"key": ..., "value": ...}, in key order."""
    with _client(url, password) as client:
        page = client.table(table).scan(prefix, limit)
    for key, value in page.items:
        _print({"key": key, "value": value})


@app.command("watch")
def watch(  # noqa: PLR0917 - typer maps parameters to options
    table: Table,
    key: Annotated[str | None, typer.Argument(help="One key (default: the table).")] = None,
    prefix: Annotated[str | None, typer.Option(help="Keys starting with this.")] = None,
    from_revision: Annotated[
        int | None, typer.Option("--from", min=1, help="Start at this revision.")
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after N events.")] = None,
    url: Url = DEFAULT_URL,
    password: Password = None,
) -> None:
    """Stream changes, one JSON line per event, until --count or Ctrl-C."""
    seen = 0
    try:
        with (
            _client(url, password) as client,
            client.table(table).watch(key, prefix=prefix, start_revision=from_revision) as w,
        ):
            for event in w:
                _print(
                    {
                        "revision": event.revision,
                        "table": event.table,
                        "key": event.key,
                        "type": event.type,
                        "value": event.value,
                        "prev_value": event.prev_value,
                    }
                )
                seen += 1
                if count is not None and seen >= count:
                    break
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command("info")
def info(url: Url = DEFAULT_URL, password: Password = None) -> None:
    """Print the server's INFO as JSON."""
    with _client(url, password) as client:
        result = client.info()
    _print(result)
