"""Last-writer-wins documents for eventually consistent tables (pure: no clock, no I/O).

Every write to an eventual table carries a **stamp**, a hybrid logical clock
reading ``(physical_ms, counter, node)``: tuples compare in that order, and
the node id makes two writes' stamps differ. Each key's state is a
**per-field LWW map with a reset**:

- a ``put`` (or a ``delete``, which puts "absent") at stamp ``s`` is the
  key's **base**: it replaces the document and every field older than ``s``;
- a ``merge`` at stamp ``s`` sets each **top-level field** of its patch as
  an LWW register: the field's new value is computed at the writer
  (``merge_patch(current[field], patch[field])``, ``null`` deletes the
  field) and wins wherever that field's stamp is older than ``s``.

So concurrent merges of *different* fields all survive (what users want for
documents: presence ``{"status"}`` from one node, ``{"device"}`` from
another); concurrent merges of the *same* top-level field keep the later
one whole; a later put or delete wins over everything older. Nested fields
are not separate registers: two writers changing ``a.x`` and ``a.y`` at the
same time keep one of the two ``a`` objects — one register per top-level
field is what converges without keeping a stamp per JSON leaf.

:func:`join` merges two states and is commutative, associative and
idempotent (a state-based CRDT), so replicas that exchange states in any
order, with duplicates, converge; local writes are joins too. A state is
``(value, meta, expires)``: ``value`` is the document (:data:`ABSENT` for a
deleted key: a **tombstone**, kept so that an older write arriving late
cannot bring the key back), ``meta`` a :class:`LwwMeta`, ``expires`` the
base's expiry time in ms (a put's TTL travels with it; merges keep it).
Expiry is a delete stamped ``(expires, 0, "")`` (:func:`expiry`): every
replica that sweeps the key applies the same one, whenever it sweeps.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

from ..model import merge_patch
from ..model.values import FrozenDict
from .updates import ABSENT as _ABSENT

__all__ = [
    "ABSENT",
    "ZERO",
    "LwwMeta",
    "Stamp",
    "as_stamp",
    "expiry",
    "join",
    "merge_delta",
    "stamp_text",
]

#: ``(physical_ms, counter, node_id)``.
Stamp = tuple[int, int, str]
#: Older than every write.
ZERO: Final[Stamp] = (0, 0, "")


#: The value of a deleted (tombstoned) key or field: the same marker update
#: functions get for a missing key, so an update's input needs no translation.
ABSENT: Final = _ABSENT


class LwwMeta(NamedTuple):
    """A key's stamps: its base's, and each top-level field's newer than the base."""

    base: Stamp
    #: Fields written by merges after the base: present in the value, or
    #: deleted (absent from it) — a deleted field's stamp is its tombstone.
    fields: FrozenDict


def as_stamp(raw: Any) -> Stamp:
    """A stamp from its wire form (msgpack gives lists); validated."""
    ms, counter, node = raw
    if not (type(ms) is int and type(counter) is int and type(node) is str):
        raise ValueError(f"not a stamp: {raw!r}")
    return (ms, counter, node)


def expiry(expires_ms: int) -> tuple[Any, LwwMeta, None]:
    """The delete an expiry is: stamped at the expiry time, before any write made then."""
    return ABSENT, LwwMeta((expires_ms, 0, ""), FrozenDict()), None


def stamp_text(stamp: Stamp) -> str:
    """``ms.counter@node``: how events and logs show a stamp."""
    return f"{stamp[0]}.{stamp[1]}@{stamp[2]}"


def _field_stamps(value: Any, meta: LwwMeta) -> dict[str, tuple[Stamp, Any]]:
    """Each field's ``(stamp, value or ABSENT)``; base fields carry the base's stamp."""
    out: dict[str, tuple[Stamp, Any]] = {}
    if isinstance(value, dict):
        for name, field in value.items():
            out[name] = (meta.fields.get(name, meta.base), field)
    for name, stamp in meta.fields.items():
        if name not in out:
            out[name] = (stamp, ABSENT)
    return out


def join(
    a: tuple[Any, LwwMeta, int | None], b: tuple[Any, LwwMeta, int | None]
) -> tuple[Any, LwwMeta, int | None]:
    """The state that has seen both ``a`` and ``b`` (see the module doc).

    The base is the one with the greater stamp (an equal stamp is the same
    write; an absent value is taken then, which keeps the choice
    deterministic). A field survives when its stamp is not older than that
    base; of two, the newer.
    """
    (va, ma, ea), (vb, mb, eb) = a, b
    if mb.base > ma.base or (mb.base == ma.base and vb is ABSENT and va is not ABSENT):
        (va, ma, ea), (vb, mb, eb) = (vb, mb, eb), (va, ma, ea)
    base = ma.base
    picked = {n: f for n, f in _field_stamps(va, ma).items() if f[0] >= base}
    for name, (stamp, field) in _field_stamps(vb, mb).items():
        if stamp >= base and (name not in picked or stamp > picked[name][0]):
            picked[name] = (stamp, field)
    newer = {n: s for n, (s, _) in picked.items() if s > base}
    if isinstance(va, dict) or newer:
        # One order on every replica: the base's own fields as the put wrote
        # them, then newer fields by stamp.
        order = [n for n in picked if picked[n][0] == base]
        order += sorted(newer, key=lambda n: (newer[n], n))
        value: Any = FrozenDict({n: picked[n][1] for n in order if picked[n][1] is not ABSENT})
    else:
        value = va  # a scalar, list or ABSENT base, no newer field
    return value, LwwMeta(base, FrozenDict(sorted(newer.items()))), ea


def merge_delta(current: Any, patch: Any, stamp: Stamp) -> tuple[Any, LwwMeta, int | None]:
    """The state a merge of ``patch`` at ``stamp`` adds, computed against ``current``.

    Each top-level member of an object patch becomes that field's new value
    (RFC 7396 below the top level). A patch that is not an object replaces
    the document (RFC 7396), so it is a put: the caller joins
    ``(patch, LwwMeta(stamp, {}), None)`` instead.
    """
    assert isinstance(patch, dict)
    base = current if isinstance(current, dict) else {}
    fields: dict[str, Any] = {}
    for name, member in patch.items():
        if member is not None:
            fields[name] = merge_patch(base.get(name), member)
    stamps = FrozenDict(dict.fromkeys(patch, stamp))
    return FrozenDict(fields), LwwMeta(ZERO, stamps), None
