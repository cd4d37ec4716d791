"""Persistence: backends that make the log of batches and snapshots durable.

Every backend keeps the :class:`Backend` contract (``base.py``) and passes the
same conformance tests. :func:`open_backend` picks one from a target string.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

from ..config import Config
from ..errors import InvalidArgument
from .base import Backend, Recovered, SnapshotData
from .crashfiles import CrashFiles
from .files import FileLayer, OsFiles
from .log import LogBackend
from .memory import MemoryBackend, MemoryStorage
from .volatile import VolatileFiles

__all__ = [
    "Backend",
    "CrashFiles",
    "FileLayer",
    "LogBackend",
    "MemoryBackend",
    "MemoryStorage",
    "OsFiles",
    "Recovered",
    "SnapshotData",
    "VolatileFiles",
    "open_backend",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
SUPPORTED_SCHEMES = ("file://", "memory://", "sqlite://", "postgresql://", "s3://")


def open_backend(target: str | os.PathLike[str], config: Config) -> Backend:
    """The backend for ``target``: a folder path or ``file://`` URL → log, ``memory://`` → memory,
    ``sqlite:///file.db`` → sqlite, ``postgresql://…`` / ``postgres://…`` → postgres,
    ``s3://bucket/prefix`` → s3 (their modules document the URL options).

    The backend is not recovered yet: the caller calls ``recover()`` first.
    Unknown schemes raise ``InvalidArgument`` naming the supported ones. The
    sqlite, postgres and s3 modules are imported only here, on use, so that
    ``import amber`` needs neither psycopg nor boto3.
    """
    if not isinstance(target, str):
        return LogBackend(target, config)
    match = _SCHEME.match(target)
    if match is None:
        return LogBackend(target, config)
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme == "file":
        if rest.startswith("localhost/"):
            rest = rest[len("localhost") :]
        if not rest.startswith("/"):
            raise InvalidArgument(f"file URL {target!r} must name an absolute path (file:///path)")
        return LogBackend(unquote(rest), config)
    if scheme == "memory":
        return MemoryBackend(config=config)
    if scheme == "sqlite":
        from .sqlite import SqliteBackend  # noqa: PLC0415 (lazy: see the docstring)

        return SqliteBackend.from_url(target, config)
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresBackend  # noqa: PLC0415
        except ImportError as exc:
            raise InvalidArgument(
                f"the postgres backend needs psycopg ({exc}): pip install 'amber-db[postgres]'"
            ) from exc
        return PostgresBackend.from_url(target, config)
    if scheme == "s3":
        try:
            from .s3 import S3Backend  # noqa: PLC0415
        except ImportError as exc:
            raise InvalidArgument(
                f"the s3 backend needs boto3 ({exc}): pip install 'amber-db[s3]'"
            ) from exc
        return S3Backend.from_url(target, config)
    raise InvalidArgument(
        f"unsupported storage scheme {scheme + '://'!r} in {target!r}: use a folder path "
        f"or one of {', '.join(SUPPORTED_SCHEMES)}"
    )
