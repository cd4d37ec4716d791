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
    "open_backend",
]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)
SUPPORTED_SCHEMES = ("file://", "memory://")


def open_backend(target: str | os.PathLike[str], config: Config) -> Backend:
    """The backend for ``target``: a folder path or ``file://`` URL → log, ``memory://`` → memory.

    The backend is not recovered yet: the caller calls ``recover()`` first.
    Unknown schemes raise ``InvalidArgument`` naming the supported ones.
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
    raise InvalidArgument(
        f"unsupported storage scheme {scheme + '://'!r} in {target!r}: use a folder path, "
        f"{' or '.join(SUPPORTED_SCHEMES)}"
    )
