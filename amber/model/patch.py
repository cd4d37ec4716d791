"""JSON Merge Patch (RFC 7396): apply a patch, and compute one from two values.

Both functions are pure: they never change their arguments, and they return
frozen values (:class:`~amber.model.values.FrozenDict` /
:class:`~amber.model.values.FrozenList`) that may share unchanged subtrees
with their (frozen, hence immutable) arguments.
"""

from __future__ import annotations

from typing import Any

from .values import FrozenDict, FrozenList, freeze, json_equal

__all__ = ["diff", "merge_patch"]

_EMPTY = FrozenDict()
_set = dict.__setitem__
_del = dict.__delitem__


def _frozen(value: Any) -> Any:
    """``value`` itself if already frozen (or a scalar), else a validated frozen copy."""
    cls = type(value)
    if cls is FrozenDict or cls is FrozenList or not isinstance(value, (dict, list, tuple)):
        return value
    return freeze(value)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply the merge patch ``patch`` to ``target`` exactly as RFC 7396 says.

    - a patch that is not an object replaces the target (arrays too: merge
      patch has no array operations);
    - an object patch turns a non-object target into ``{}``, then for each
      member: ``null`` removes the member from the target, anything else is
      merged recursively into the target's member (absent counts as a
      non-object), so ``null`` members nested in a new object disappear.

    The arguments are frozen, validated values in the store; plain
    containers are accepted too and frozen on the way, which validates them
    with the default limits (raising :class:`~amber.errors.InvalidValue`):
    a store with its own limits freezes the patch itself first. The depth of
    the result never exceeds the deeper of ``target`` and ``patch``.
    """
    if type(patch) is not FrozenDict:
        if not isinstance(patch, dict):
            return _frozen(patch)
        patch = freeze(patch)
    return _merge_object(target, patch)


def _merge_object(target: Any, patch: dict[str, Any]) -> FrozenDict:
    if type(target) is FrozenDict:
        base: FrozenDict = target
    elif isinstance(target, dict):
        base = freeze(target)
    else:
        base = _EMPTY
    out: FrozenDict | None = None
    for key, value in patch.items():
        if value is None:
            if key in base:
                if out is None:
                    out = FrozenDict(base)
                _del(out, key)
            continue
        # isinstance, not an exact type check: a hand-built FrozenDict may
        # hold plain containers, and they must merge (and freeze) all the same.
        merged = _merge_object(base.get(key), value) if isinstance(value, dict) else _frozen(value)
        if out is None:
            # Skip the copy when the member already is this very value.
            if base.get(key, _ABSENT) is merged:
                continue
            out = FrozenDict(base)
        # Our own fresh copy, not yet shared with anyone: safe to fill in.
        _set(out, key, merged)
    return base if out is None else out


_ABSENT: Any = object()


def diff(old: Any, new: Any) -> Any:
    """The merge patch that turns ``old`` into ``new``: ``merge_patch(old, p) == new``.

    - If either side is not an object the patch is ``new`` itself (merge
      patch replaces non-objects wholesale; ``old=None`` for an absent
      document is this case too).
    - Two objects give an object patch: removed members become ``null``,
      added members carry their new value, members whose values differ
      (by :func:`~amber.model.values.json_equal`, so ``True`` -> ``1`` is a
      change) carry a nested diff when both sides are objects and the new
      value otherwise. Equal objects give ``{}``.

    What RFC 7396 cannot express, and what ``diff`` does then: a patch
    member ``null`` means "remove", and null members inside a patch's new
    objects are dropped, so an object member whose *new* value is ``null``
    (``{"a": 1} -> {"a": null}``, at any object depth, in an added or
    changed part) cannot be produced. ``diff`` emits ``null`` for it, i.e.
    the member is removed: the patch stays valid and applying it yields
    ``new`` with exactly those null members absent (the closest value merge
    patch can reach). Precisely: ``merge_patch(old, diff(old, new)) == new``
    holds whenever ``new`` has no ``null`` object member outside the parts
    that ``json_equal`` the corresponding part of ``old``; nulls inside
    arrays are always fine (arrays are replaced whole).
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return _frozen(new)
    return _diff_objects(old, new)


def _diff_objects(old: dict[str, Any], new: dict[str, Any]) -> FrozenDict:
    patch: dict[str, Any] = {}
    for key in old:
        if key not in new:
            patch[key] = None
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        if before is _ABSENT:
            patch[key] = _frozen(value)
        elif not json_equal(before, value):
            if isinstance(before, dict) and isinstance(value, dict):
                patch[key] = _diff_objects(before, value)
            else:
                patch[key] = _frozen(value)
    return FrozenDict(patch)
