"""Who flushes for asyncio writers: the event loop itself, or the flusher thread.

See the module doc of ``amber.node.pipeline``: while flushes are quick, the
writers of one loop turn share one flush led by the loop; when flushes turn
slow the background flusher leads and the loop goes on.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import amber
from amber.node import pipeline as pipeline_module


def _pipeline(db: amber.Database) -> pipeline_module.CommitPipeline:
    return db._node.replicator.pipeline


def _flusher_running() -> bool:
    return any(t.name == "amber-flusher" for t in threading.enumerate())


def test_writers_of_one_turn_share_one_flush_led_by_the_loop(tmp_path: Path) -> None:
    with amber.open(tmp_path / "db", durability="always") as db:
        table = db.table("t")
        pipeline = _pipeline(db)

        async def main() -> None:
            await table.aput("warm", 0)
            before = pipeline.stats()
            await asyncio.gather(*(table.aput(f"k{i}", i) for i in range(20)))
            after = pipeline.stats()
            assert after["batches"] - before["batches"] == 20
            assert after["fsyncs"] - before["fsyncs"] == 1

        asyncio.run(main())
        assert pipeline._flusher is None  # no thread was needed
        assert [table.get(f"k{i}") for i in range(20)] == list(range(20))


def test_slow_flushes_are_handed_to_the_flusher_thread(tmp_path: Path) -> None:
    with amber.open(tmp_path / "db", durability="always") as db:
        table = db.table("t")
        pipeline = _pipeline(db)
        pipeline.flush_seconds = 10 * pipeline_module.INLINE_FLUSH_MAX

        async def main() -> None:
            await asyncio.gather(*(table.aput(f"k{i}", i) for i in range(10)))

        asyncio.run(main())
        assert pipeline._flusher is not None
        assert table.get("k9") == 9
        # Quick flushes since then bring the average down: back to the loop.
        for i in range(60):
            table.put(f"s{i}", i)
        assert pipeline.flush_seconds <= pipeline_module.INLINE_FLUSH_MAX


def test_loop_writers_and_thread_writers_mix(tmp_path: Path) -> None:
    with amber.open(tmp_path / "db", durability="always") as db:
        table = db.table("t")
        stop = threading.Event()
        written: list[int] = []

        def writer() -> None:
            i = 0
            while not stop.is_set():
                table.put(f"sync{i}", i)
                written.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:

            async def main() -> None:
                for round_ in range(30):
                    await asyncio.gather(*(table.aput(f"a{round_}-{i}", i) for i in range(5)))

            asyncio.run(asyncio.wait_for(main(), 60))
        finally:
            stop.set()
            thread.join(30)
        assert table.get("a29-4") == 4
        assert written and table.get(f"sync{written[-1]}") == written[-1]


def test_writes_from_two_loops_in_two_threads(tmp_path: Path) -> None:
    with amber.open(tmp_path / "db", durability="always") as db:
        table = db.table("t")
        errors: list[BaseException] = []

        def run(name: str) -> None:
            async def main() -> None:
                for round_ in range(40):
                    await asyncio.gather(*(table.aput(f"{name}{round_}-{i}", i) for i in range(4)))

            try:
                asyncio.run(asyncio.wait_for(main(), 60))
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors
        assert table.get("a39-3") == 3
        assert table.get("b39-3") == 3
