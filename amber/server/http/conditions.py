"""Conditional requests (RFC 9110 §13) on a key's revision; pure functions.

A key's entity tag is its ``mod_revision`` as a strong tag: ``ETag: "42"``.
Every write gives the key a new revision, so the tag changes exactly when the
document does (and on a put of the same value: a write is a write).

- ``If-Match: "42"`` — apply only if the key is at revision 42 (strong
  comparison: a weak tag never matches); ``If-Match: *`` — only if it exists.
- ``If-None-Match: *`` — only if the key is absent (create, never replace);
  ``If-None-Match: "42"`` — only if it is not at revision 42 (weak comparison);
  on a ``GET`` a match answers ``304 Not Modified``.

A failed condition is ``412 Precondition Failed`` and changes nothing. For a
write, the conditions become compares of the write's own batch, so checking
and writing are one atomic step (no race between them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...database import Compare, Entry
from ...errors import ConditionFailed, InvalidArgument

__all__ = ["EntityTags", "check_read", "etag", "parse_entity_tags", "write_compares"]

# One entity tag: W/"…" or "…" (RFC 9110 etagc: no DQUOTE inside); bare tokens are
# accepted too (``If-Match: 42``), as curl users type them.
_TAG = re.compile(r'\s*(?:(W/)?"([\x21\x23-\x7e\x80-\xff]*)"|([^\s,"]+))\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class EntityTags:
    """A parsed ``If-Match`` / ``If-None-Match`` value."""

    any: bool = False
    #: (weak, opaque value) per tag.
    tags: tuple[tuple[bool, str], ...] = ()

    def revisions(self, *, strong_only: bool) -> set[int]:
        """The revisions the tags name (tags that are not revisions name none)."""
        found: set[int] = set()
        for weak, value in self.tags:
            if weak and strong_only:
                continue
            if value.isascii() and value.isdigit() and len(value) < 20:
                found.add(int(value))
        return found


def etag(revision: int) -> str:
    """The ``ETag`` of a key at ``revision``."""
    return f'"{revision}"'


def parse_entity_tags(header: str | None, name: str) -> EntityTags | None:
    """Parse a conditional header; ``None`` when absent. Raises ``InvalidArgument``."""
    if header is None:
        return None
    text = header.strip()
    if text == "*":
        return EntityTags(any=True)
    tags: list[tuple[bool, str]] = []
    position = 0
    while position < len(text):
        match = _TAG.match(text, position)
        if match is None or match.end() == position:
            raise InvalidArgument(
                f'{name} must be * or a list of entity tags such as "42", not {header[:80]!r}'
            )
        weak, quoted, bare = match.groups()
        tags.append((weak is not None, quoted if quoted is not None else bare))
        position = match.end()
    if not tags:
        raise InvalidArgument(f'{name} is empty: give * or an entity tag such as "42"')
    return EntityTags(tags=tuple(tags))


def _failed(table: str, key: str, header: str, entry: Entry | None) -> ConditionFailed:
    state = "absent" if entry is None else f"at revision {entry.mod_revision}"
    return ConditionFailed(
        f"{header} does not hold: key {key!r} in table {table!r} is {state}", table, key
    )


def check_read(
    table: str,
    key: str,
    entry: Entry | None,
    if_match: EntityTags | None,
    if_none_match: EntityTags | None,
) -> bool:
    """Evaluate the conditions of a read; True: answer ``304 Not Modified``.

    Raises ``ConditionFailed`` when ``If-Match`` does not hold.
    """
    if if_match is not None and not _matches(entry, if_match, strong=True):
        raise _failed(table, key, "If-Match", entry)
    return if_none_match is not None and _matches(entry, if_none_match, strong=False)


def _matches(entry: Entry | None, tags: EntityTags, *, strong: bool) -> bool:
    if entry is None:
        return False
    return tags.any or entry.mod_revision in tags.revisions(strong_only=strong)


def write_compares(
    table: str,
    key: str,
    entry: Entry | None,
    if_match: EntityTags | None,
    if_none_match: EntityTags | None,
) -> list[Compare]:
    """The compares that make a write conditional on the headers.

    ``entry`` is the key as read just before: a condition it already fails
    raises ``ConditionFailed`` at once (RFC 9110's order: If-Match, then
    If-None-Match); the returned compares recheck it atomically in the commit.
    """
    compares: list[Compare] = []
    if if_match is not None:
        if not _matches(entry, if_match, strong=True):
            raise _failed(table, key, "If-Match", entry)
        assert entry is not None
        if if_match.any:
            compares.append(Compare(table, key, "exists", "=", True))
        else:
            # The tag that matched is the revision read: pin exactly that one.
            compares.append(Compare(table, key, "mod_revision", "=", entry.mod_revision))
    if if_none_match is not None:
        if _matches(entry, if_none_match, strong=False):
            raise _failed(table, key, "If-None-Match", entry)
        if if_none_match.any:
            compares.append(Compare(table, key, "exists", "=", False))
        else:
            compares.extend(
                Compare(table, key, "mod_revision", "!=", revision)
                for revision in sorted(if_none_match.revisions(strong_only=False))
            )
    return compares
