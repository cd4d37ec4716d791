"""The msgpack codec of values.

Measured on the CI machine (2 shared vCPUs, Python 3.11), decoding 1,000,000
small documents (70 bytes each, one object with a 2-element array) in
chunks of 10,000:

===========================================  ============  =========
hooks                                        GC running    GC paused
===========================================  ============  =========
none (plain dict/list, for reference)        4.3 s         1.3 s
object_hook=FrozenDict, list_hook=FrozenList 5.7 s         1.7-2.3 s
object_pairs_hook=FrozenDict, list_hook      4.8 s         1.9-2.1 s
object_hook + use_list=False (tuples)        --            1.6 s
===========================================  ============  =========

So ``unpack`` uses ``object_hook`` with ``use_list=False`` and pauses the
cyclic GC while decoding payloads of 64 KiB or more. ``pack`` with a reused
per-thread ``Packer`` takes ~0.9 us a document against ~1.4-2.2 us for
``msgpack.packb``. ``test_model_perf.py`` (marked slow) re-measures.
"""

from __future__ import annotations

import gc
import math
import struct
import threading
from typing import Any

import msgpack
import pytest
from hypothesis import given
from model_support import INT_MAX, INT_MIN, PROPERTY, assert_frozen, assert_plain, json_values

from amber.errors import Corrupted, InvalidValue
from amber.model import FrozenDict, FrozenList, freeze, json_equal, pack, unpack, unpack_plain
from amber.model.codec import BULK_BYTES


@PROPERTY
@given(json_values)
def test_round_trip(value: Any) -> None:
    data = pack(freeze(value))
    assert data == pack(value)  # frozen containers encode like plain ones
    back = unpack(data)
    assert json_equal(back, value)
    assert_frozen(back)
    plain = unpack_plain(data)
    assert json_equal(plain, value)
    assert_plain(plain)
    assert json_equal(unpack(memoryview(data)), value)


def test_frozen_containers_encode_as_map_and_array() -> None:
    assert pack(FrozenDict({"a": FrozenList([1])})) == b"\x81\xa1a\x91\x01"
    assert pack(freeze({"a": [1]})) == msgpack.packb({"a": [1]})


def test_floats_are_float64() -> None:
    assert pack(1.5) == b"\xcb" + struct.pack(">d", 1.5)
    assert pack(0.1) == b"\xcb" + struct.pack(">d", 0.1)
    assert unpack(pack(0.1)) == 0.1
    assert math.copysign(1.0, unpack(pack(-0.0))) == -1.0
    assert type(unpack(pack(2.0))) is float


def test_int_bounds_round_trip() -> None:
    for value in (INT_MIN, -1, 0, 2**63, INT_MAX):
        assert unpack(pack(value)) == value
    with pytest.raises(InvalidValue, match="cannot encode"):
        pack(INT_MAX + 1)


def test_strings_are_str_type_and_bools_stay_bools() -> None:
    data = pack({"s": "ü", "t": True, "n": None})
    assert data == b"\x83\xa1s\xa2\xc3\xbc\xa1t\xc3\xa1n\xc0"
    back = unpack(data)
    assert type(back["t"]) is bool
    assert back == {"s": "ü", "t": True, "n": None}


def test_pack_rejects_what_msgpack_cannot_carry() -> None:
    for bad in ({"a": object()}, "\ud800", {1j: 1}):
        with pytest.raises(InvalidValue, match="cannot encode") as info:
            pack(bad)
        assert info.value.__cause__ is not None
    # A failed pack leaves the per-thread packer clean.
    assert pack({"b": 1}) == b"\x81\xa1b\x01"


def test_pack_is_thread_safe() -> None:
    docs = [freeze({"n": i, "s": "x" * (i % 50), "l": list(range(i % 7))}) for i in range(200)]
    expected = [msgpack.packb(d) for d in docs]
    failures: list[str] = []

    def work() -> None:
        for _ in range(20):
            for doc, want in zip(docs, expected, strict=True):
                if pack(doc) != want:
                    failures.append(repr(doc))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\x92\x01", "truncated array"),
        (b"\x81\xa1a", "truncated map"),
        (b"\xc1", "reserved byte"),
        (b"\x01\x02", "extra data"),
        (b"\x81\x01\x02", "int map key"),
        (b"\x81\xc0\x02", "nil map key"),
        (b"\xa2\xff\xfe", "invalid utf-8"),
        (b"\xc4\x01a", "bin"),
        (b"\x91\xc4\x02ab", "nested bin"),
        (b"\xc4\x00", "empty bin at the root"),
        (b"\xd4\x01\x00", "ext"),
        (b"\xc7\x00\x05", "empty ext"),
        (b"\xd6\xff\x00\x00\x00\x00", "timestamp ext"),
        (b"\x91" * 2000 + b"\x01", "nested too deep"),
    ],
)
@pytest.mark.parametrize("decode", [unpack, unpack_plain])
def test_damaged_data_is_corrupted(data: bytes, why: str, decode: Any) -> None:
    with pytest.raises(Corrupted, match="cannot decode"):
        decode(data)


def test_corrupted_chains_the_msgpack_error() -> None:
    with pytest.raises(Corrupted) as info:
        unpack(b"\x92\x01")
    assert isinstance(info.value.__cause__, ValueError)


def test_a_bulk_payload_pauses_gc_and_restores_it() -> None:
    docs = [{"n": i, "tags": ["a", "b"], "s": "x" * 20} for i in range(4000)]
    data = pack(docs)
    assert len(data) >= BULK_BYTES
    assert gc.isenabled()
    back = unpack(data)
    assert gc.isenabled()
    assert json_equal(back, docs)
    assert_frozen(back)
    gc.disable()
    try:
        unpack_plain(data)
        assert not gc.isenabled()  # not switched on behind the caller's back
    finally:
        gc.enable()
    with pytest.raises(Corrupted):
        unpack(data[:-1])
    assert gc.isenabled()


def test_unpacked_map_keys_are_shared() -> None:
    # msgpack interns map keys: a million documents do not hold a million
    # copies of "user".
    first, second = unpack(pack([{"user": 1}, {"user": 2}]))
    assert next(iter(first)) is next(iter(second))
