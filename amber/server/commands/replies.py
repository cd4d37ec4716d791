"""The reply types handlers return; each front end encodes them its own way.

RESP encodes them as in :mod:`amber.server.resp.protocol`'s table; they are
plain ``str``/``list`` subclasses, so another front end can treat them as
text and lists.
"""

from __future__ import annotations

from typing import Any

__all__ = ["NULL_ARRAY", "ErrorReply", "Push", "Replies", "Simple", "Verbatim"]


class Simple(str):
    """A simple-string reply (``+OK``)."""

    __slots__ = ()


class ErrorReply(str):
    """An error reply; the text starts with its code (``ERR``, ``WRONGTYPE`` …)."""

    __slots__ = ()


class Verbatim(str):
    """Text for humans (INFO, CLIENT LIST): RESP3 verbatim string, RESP2 bulk."""

    __slots__ = ()


class Push(list[Any]):
    """An out-of-band message (pub/sub, watch events): RESP3 push, RESP2 array."""

    __slots__ = ()


class Replies(list[Any]):
    """Several top-level replies to one command (``SUBSCRIBE a b`` answers twice)."""

    __slots__ = ()


class _NullArray:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NULL_ARRAY"


#: The "no array" reply (an aborted EXEC): ``*-1`` in RESP2, ``_`` in RESP3.
NULL_ARRAY: Any = _NullArray()
