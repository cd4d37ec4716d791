"""Speed of the write and reopen hot paths (``-m slow``; prints its numbers).

Run: ``.venv/bin/python -m pytest -q -m slow -s tests/model/test_model_perf.py``.
The bounds are loose on purpose (shared CI machines); the printed numbers
are what to compare.
"""

from __future__ import annotations

import json
import time
import timeit
from typing import Any

import pytest

from amber.model import check_key, freeze, pack, unpack

pytestmark = pytest.mark.slow

SMALL = {
    "user": "ada",
    "age": 36,
    "email": "ada@example.com",
    "tags": ["x", "y"],
    "active": True,
    "score": 1.5,
}
LARGE = {
    "id": "01a207be-5830-7521-bae4-4ea8de343539",
    "items": [
        {
            "sku": f"SKU-{i:05d}",
            "qty": i,
            "price": i * 1.25,
            "name": "widget ünïcode" if i % 7 == 0 else "widget",
            "tags": ["a", "b"],
            "ok": i % 2 == 0,
            "note": None,
        }
        for i in range(85)
    ],
}


def per_call_ns(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def test_freeze_speed() -> None:
    rows = []
    for name, doc, number in (("small", SMALL, 20_000), ("large", LARGE, 200)):
        size = len(json.dumps(doc))
        ns = per_call_ns(lambda doc=doc: freeze(doc), number)
        ref = per_call_ns(lambda doc=doc: json.loads(json.dumps(doc)), number)
        rows.append((name, size, ns, ref))
        print(f"\nfreeze {name} ({size} B): {ns:,.0f} ns (json round trip {ref:,.0f} ns)")
        # Validation plus a frozen copy must stay cheaper than a JSON round trip.
        assert ns < ref * 1.5
    key_ns = per_call_ns(lambda: check_key("user:0123456789"), 100_000)
    print(f"check_key: {key_ns:,.0f} ns")


def test_reopen_decode_speed() -> None:
    docs = [dict(SMALL, age=i) for i in range(10_000)]
    chunk = pack(docs)
    total = 1_000_000
    started = time.perf_counter()
    kept = [unpack(chunk) for _ in range(total // len(docs))]
    elapsed = time.perf_counter() - started
    print(
        f"\nunpack {total:,} docs ({len(chunk) // len(docs)} B each, chunks of "
        f"{len(docs):,}): {elapsed:.2f} s, {elapsed / total * 1e9:,.0f} ns/doc"
    )
    assert sum(len(c) for c in kept) == total
    assert elapsed < 5.0

    one = pack(SMALL)
    single = per_call_ns(lambda: unpack(one), 50_000)
    packed = per_call_ns(lambda: pack(SMALL), 50_000)
    print(f"unpack one small doc: {single:,.0f} ns, pack: {packed:,.0f} ns")
