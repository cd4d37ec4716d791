"""The ``amber`` command line; see ``app.py`` for how commands are organized."""

from __future__ import annotations

from . import (
    backup,  # noqa: F401  (registers its commands)
    chaos,  # noqa: F401  (registers its commands)
    check,  # noqa: F401  (registers its commands)
    cluster,  # noqa: F401  (registers its commands)
    data,  # noqa: F401  (registers its commands)
    serve,  # noqa: F401  (registers its commands)
)
from .app import app


def main() -> None:
    app()


__all__ = ["app", "main"]
