"""One table that maps Amber's errors to each wire protocol's errors.

RESP replies ``-PREFIX message``; HTTP answers ``application/problem+json``
(RFC 9457) with a status; both come from here so the front ends never
disagree about what an error means.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import errors


@dataclass(frozen=True, slots=True)
class WireError:
    """How one Amber error class appears on the wire."""

    resp_prefix: str
    http_status: int
    #: The RFC 9457 ``type`` slug (``https://amber.dev/problems/<slug>``-style, relative).
    slug: str


# Most specific first: the first isinstance match wins.
_TABLE: tuple[tuple[type[errors.AmberError], WireError], ...] = (
    (errors.TooLarge, WireError("ERR", 413, "too-large")),
    (errors.InvalidValue, WireError("ERR", 422, "invalid-value")),
    (errors.InvalidName, WireError("ERR", 400, "invalid-name")),
    (errors.InvalidQuery, WireError("ERR", 400, "invalid-query")),
    (errors.InvalidArgument, WireError("ERR", 400, "invalid-argument")),
    (errors.NotFound, WireError("ERR", 404, "not-found")),
    (errors.ConditionFailed, WireError("CONDITION", 412, "condition-failed")),
    (errors.Compacted, WireError("COMPACTED", 410, "compacted")),
    (errors.Lagged, WireError("LAGGED", 409, "lagged")),
    (errors.Closed, WireError("CLOSED", 503, "closed")),
    (errors.Locked, WireError("LOCKED", 503, "locked")),
    (errors.StorageFailed, WireError("IOERR", 503, "storage-failed")),
    (errors.Corrupted, WireError("CORRUPTED", 500, "corrupted")),
    # Redis Cluster answers TRYAGAIN for "not now, retry"; the outcome code is Amber's.
    (errors.Unavailable, WireError("TRYAGAIN", 503, "unavailable")),
    (errors.UnknownOutcome, WireError("UNKNOWN", 504, "unknown-outcome")),
)
_DEFAULT = WireError("ERR", 500, "internal")


def wire_error(exc: BaseException) -> WireError:
    """The wire form of ``exc`` (an unexpected error maps to a 500 / ``ERR``)."""
    for cls, wire in _TABLE:
        if isinstance(exc, cls):
            return wire
    return _DEFAULT
