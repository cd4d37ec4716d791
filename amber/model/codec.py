"""msgpack encoding of values, as written to logs and snapshots.

Format: standard msgpack with the bin/str distinction (``use_bin_type``),
floats always as float64, maps with string keys. Amber never stores bytes
or extension types, so meeting one while decoding means the data is damaged.

Decoding builds :class:`~amber.model.values.FrozenDict` /
:class:`~amber.model.values.FrozenList` directly through msgpack's hooks, so
a reopened store can hand values out without another pass over them.
"""

from __future__ import annotations

import gc
import threading
from typing import Any, NoReturn

import msgpack

from ..errors import Corrupted, InvalidValue
from .values import FrozenDict, FrozenList

__all__ = ["pack", "unpack", "unpack_plain"]

#: Payloads at least this large are decoded with the cyclic GC paused.
BULK_BYTES = 64 * 1024


def _no_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"unexpected msgpack extension type {code}")


_COMMON: dict[str, Any] = {
    "raw": False,
    "strict_map_key": True,
    # Any non-empty bin or ext is refused by msgpack itself, at no cost.
    "max_bin_len": 0,
    "max_ext_len": 0,
    "ext_hook": _no_ext,
}
# Measured fastest of object_hook / object_pairs_hook x use_list (see
# tests/model/test_codec.py): msgpack builds a dict and a tuple, and the
# frozen types copy them in C.
_FROZEN: dict[str, Any] = {
    **_COMMON,
    "object_hook": FrozenDict,
    "list_hook": FrozenList,
    "use_list": False,
}
_PLAIN: dict[str, Any] = {**_COMMON, "use_list": True}

_unpackb = msgpack.unpackb
_DECODE_ERRORS = (ValueError, TypeError, OverflowError, msgpack.UnpackException)

# A Packer reuses its buffer, which makes it about twice as fast as packb,
# but it is not safe to share between threads: one per thread.
_packers = threading.local()


def _new_packer() -> Any:
    packer = msgpack.Packer(use_bin_type=True, use_single_float=False, datetime=False)
    _packers.packer = packer
    return packer


def pack(obj: Any) -> bytes:
    """Encode a (frozen or plain) value, or a structure of them, as msgpack.

    Thread-safe. Raises :class:`~amber.errors.InvalidValue` for what msgpack
    cannot carry; values that went through ``freeze`` always encode.
    """
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _new_packer()
    try:
        data: bytes = packer.pack(obj)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidValue(f"cannot encode value as msgpack: {exc}") from exc
    return data


def _decode(data: bytes | memoryview, options: dict[str, Any]) -> Any:
    try:
        if len(data) < BULK_BYTES:
            result = _unpackb(data, **options)
        else:
            # A snapshot chunk creates many containers at once, and every
            # one of them is tracked: with the GC running, its full
            # collections re-walk everything already loaded, which made
            # decoding 1M documents about 3x slower. Nothing decoded here
            # can form a cycle, so pausing it loses nothing.
            paused = gc.isenabled()
            if paused:
                gc.disable()
            try:
                result = _unpackb(data, **options)
            finally:
                if paused:
                    gc.enable()
    except _DECODE_ERRORS as exc:
        raise Corrupted(f"cannot decode msgpack data ({len(data)} bytes): {exc}") from exc
    if type(result) is bytes:
        raise Corrupted("cannot decode msgpack data: found bytes, which Amber never stores")
    return result


def unpack(data: bytes | memoryview) -> Any:
    """Decode msgpack into frozen values (``FrozenDict``/``FrozenList``).

    Raises :class:`~amber.errors.Corrupted` if ``data`` is not exactly one
    well-formed msgpack object of the kinds Amber writes (str keys, no
    non-empty bin, no ext types). A zero-length bin nested in a container is
    the one foreign shape not detected: spotting it would cost a scan of
    every payload, and the log's CRC32C already guards against damage.
    """
    return _decode(data, _FROZEN)


def unpack_plain(data: bytes | memoryview) -> Any:
    """Decode msgpack into plain, mutable ``dict``/``list`` values; see :func:`unpack`."""
    return _decode(data, _PLAIN)
