"""Time-sortable ids for documents."""

from __future__ import annotations

import uuid_utils

__all__ = ["new_id"]


def new_id() -> str:
    """A new UUIDv7 (RFC 9562) as its canonical 36-character string.

    The first 48 bits are the Unix time in milliseconds, so ids sort (as
    strings too) in creation order, which keeps recent keys together in
    range scans. Within one process ids are strictly increasing even inside
    one millisecond (uuid-utils keeps a monotonic counter) and safe to call
    from several threads.
    """
    return str(uuid_utils.uuid7())
