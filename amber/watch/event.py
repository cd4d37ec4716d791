"""What a watch delivers: events, whole revisions of them, progress marks.

An :class:`Event` shares its ``value`` and ``prev_value`` with the store
(they are frozen, read-only values), so publishing one costs an object, not
a copy. Its ``diff`` is computed on first access and cached, so writes that
nobody watches never pay for it, and every watcher of the same change shares
one result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Literal, NamedTuple, NoReturn, cast

from ..model import diff as merge_diff
from ..model import json_equal
from ..store.lww import stamp_text
from ..store.state import Change

__all__ = ["Event", "EventBatch", "EventType", "Progress", "event_of"]

EventType = Literal["put", "merge", "delete", "expire"]

_UNSET: Any = object()


class _EventSlots:
    """The fields of an event; see :class:`Event`."""

    __slots__ = (
        "_base",
        "_diff",
        "_had_prev",
        "key",
        "prev_value",
        "revision",
        "stamp",
        "table",
        "type",
        "value",
    )
    revision: int
    table: str
    key: str
    type: EventType
    value: Any
    prev_value: Any
    #: An eventual table's change: the HLC stamp ``(ms, counter, origin node)``
    #: of the write that made it; None for strong tables.
    stamp: tuple[int, int, str] | None
    #: Whether the key existed before (a ``None`` prev_value is ambiguous).
    _had_prev: bool
    #: The event this one was derived from (``without_prev``); it owns the cache.
    _base: Event | None
    _diff: Any


class Event(_EventSlots):
    """One key's change in a committed revision; immutable.

    - ``type``: ``put``, ``merge``, ``delete`` or ``expire`` (a TTL ran out;
      a dropped table reports ``delete`` for each of its keys).
    - ``value``: the value after the change, ``None`` after delete/expire.
    - ``prev_value``: the value before (``None`` if the key was absent, or if
      the watch was opened with ``prev_value=False``).
    - ``diff``: the RFC 7396 merge patch from the previous value to ``value``
      (``{}`` for an unchanged object; ``None``, the patch that removes the
      document, for delete/expire). It is computed when first read.
    - ``stamp`` (eventual tables): the winning write's hybrid logical clock
      stamp ``(ms, counter, node)``; ``origin`` is its node, ``hlc`` its text.

    Events of one transaction share its ``revision``. Equality compares the
    six public fields.
    """

    __slots__ = ()
    __match_args__ = ("revision", "table", "key", "type", "value", "prev_value")

    def __init__(  # noqa: PLR0917 - positional like the issue's event tuple
        self,
        revision: int,
        table: str,
        key: str,
        type: EventType,
        value: Any,
        prev_value: Any = None,
        _had_prev: bool | None = None,
        _base: Event | None = None,
        stamp: tuple[int, int, str] | None = None,
    ) -> None:
        init = object.__setattr__
        init(self, "revision", revision)
        init(self, "table", table)
        init(self, "key", key)
        init(self, "type", type)
        init(self, "value", value)
        init(self, "prev_value", prev_value)
        init(self, "_had_prev", prev_value is not None if _had_prev is None else _had_prev)
        init(self, "_base", _base)
        init(self, "_diff", _UNSET)
        init(self, "stamp", stamp)

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: events are immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise FrozenInstanceError(f"cannot delete field {name!r}: events are immutable")

    def _fields(self) -> tuple[Any, ...]:
        return (self.revision, self.table, self.key, self.type, self.value, self.prev_value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash((self.revision, self.table, self.key, self.type))

    def __repr__(self) -> str:
        return (
            f"Event(revision={self.revision!r}, table={self.table!r}, key={self.key!r}, "
            f"type={self.type!r}, value={self.value!r}, prev_value={self.prev_value!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Event, (*self._fields(), self._had_prev))

    @property
    def diff(self) -> Any:
        """The merge patch from the previous value to ``value``; computed once."""
        if self._base is not None:
            return self._base.diff
        patch = self._diff
        if patch is _UNSET:
            patch = merge_diff(self.prev_value if self._had_prev else None, self.value)
            object.__setattr__(self, "_diff", patch)
        return patch

    @property
    def origin(self) -> str | None:
        """The node whose write made this change (eventual tables), else None."""
        return None if self.stamp is None else self.stamp[2]

    @property
    def hlc(self) -> str | None:
        """The change's stamp as ``ms.counter@node`` (eventual tables), else None."""
        return None if self.stamp is None else stamp_text(self.stamp)

    @property
    def is_noop(self) -> bool:
        """A put or merge that left an existing value as it was."""
        source = self._base if self._base is not None else self
        if source.type not in ("put", "merge") or not source._had_prev:
            return False
        return source.prev_value is source.value or json_equal(source.prev_value, source.value)

    def without_prev(self) -> Event:
        """This event with ``prev_value=None``; ``diff`` still describes the change."""
        base = self._base if self._base is not None else self
        return Event(
            self.revision,
            self.table,
            self.key,
            self.type,
            self.value,
            None,
            False,
            base,
            self.stamp,
        )


class _EventBuilder(_EventSlots):
    """Builds an event at plain-attribute speed, then turns into an :class:`Event`.

    The publisher builds one event per watched change; filling the frozen
    class's slots through ``object.__setattr__`` made that four times slower.
    Both classes have the same slot layout, so switching ``__class__`` is
    allowed.
    """

    __slots__ = ()

    def __init__(self, revision: int, change: Change) -> None:
        record, prev = change.record, change.prev
        self.revision = revision
        self.table = change.table
        self.key = change.key
        self.type = change.kind
        self.value = None if record is None else record[0]
        self.prev_value = None if prev is None else prev[0]
        self._had_prev = prev is not None
        self._base = None
        self._diff = _UNSET
        self.stamp = change.stamp


def event_of(revision: int, change: Change) -> Event:
    """The event for one of the store's changes (which the history keeps as is)."""
    event: Any = _EventBuilder(revision, change)
    event.__class__ = Event
    return cast(Event, event)


class EventBatch(NamedTuple):
    """The events of one revision that a watch matched, in commit order.

    A named tuple: one is built per delivered revision, and that is cheaper.
    """

    revision: int
    events: Sequence[Event]


@dataclass(frozen=True, slots=True)
class Progress:
    """Sent to an idle watch: every matching event up to ``revision`` was delivered."""

    revision: int
