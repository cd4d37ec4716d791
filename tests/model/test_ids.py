"""Time-sortable ids (UUIDv7, RFC 9562)."""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid

from amber.model import new_id

CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_format_version_and_variant() -> None:
    ident = new_id()
    assert type(ident) is str
    assert CANONICAL.fullmatch(ident), ident
    parsed = uuid.UUID(ident)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == ident


def test_timestamp_is_now() -> None:
    before = time.time() * 1000
    ident = new_id()
    after = time.time() * 1000
    millis = int(ident.replace("-", "")[:12], 16)
    assert before - 1000 <= millis <= after + 1000


def test_strictly_increasing_within_a_process() -> None:
    ids = [new_id() for _ in range(100_000)]
    assert all(a < b for a, b in itertools.pairwise(ids))
    # Sorting as strings and as UUIDs agree.
    assert [uuid.UUID(i).int for i in ids] == sorted(uuid.UUID(i).int for i in ids)


def test_unique_across_threads() -> None:
    per_thread = 25_000
    results: list[list[str]] = [[] for _ in range(4)]
    start = threading.Barrier(4)

    def work(out: list[str]) -> None:
        start.wait()
        for _ in range(per_thread):
            out.append(new_id())

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for out in results for i in out]
    assert len(everything) == 4 * per_thread
    assert len(set(everything)) == len(everything)
    for out in results:  # each thread sees its own ids increase
        assert out == sorted(out)
