"""The model: JSON values, merge patch and diff, names, ids, codec, filters.

Pure functions and value types with no I/O, threads or clocks (except the
time inside ids); every layer above builds on it.
"""

from .codec import pack, unpack, unpack_plain
from .filters import compile_where
from .ids import new_id
from .names import check_key, check_table
from .patch import diff, merge_patch
from .values import DEFAULT_LIMITS, FrozenDict, FrozenList, freeze, json_equal, thaw

__all__ = [
    "DEFAULT_LIMITS",
    "FrozenDict",
    "FrozenList",
    "check_key",
    "check_table",
    "compile_where",
    "diff",
    "freeze",
    "json_equal",
    "merge_patch",
    "new_id",
    "pack",
    "thaw",
    "unpack",
    "unpack_plain",
]
