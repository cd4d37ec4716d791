"""Background jobs that restart themselves and report their health.

A job (snapshotting, TTL sweeping, the ``interval`` fsync) is a function run
every few milliseconds on its own thread. When it raises, the supervisor
logs it, waits with exponential backoff, and runs it again: a job never dies
silently, and ``health()`` shows each job's state, restarts and last error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass(slots=True)
class JobHealth:
    name: str
    state: str = "running"
    runs: int = 0
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None


class Supervisor:
    """Runs named periodic jobs on daemon threads until ``stop``."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._health: dict[str, JobHealth] = {}

    def every(self, name: str, interval_s: float, job: Callable[[], Any]) -> None:
        """Run ``job`` every ``interval_s`` seconds, restarting it on failure."""
        health = self._health[name] = JobHealth(name)
        thread = threading.Thread(
            target=self._run, args=(health, interval_s, job), name=f"amber-{name}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _run(self, health: JobHealth, interval_s: float, job: Callable[[], Any]) -> None:
        streak = 0
        delay = interval_s
        while not self._stop.wait(delay):
            try:
                job()
            except Exception as exc:
                streak += 1
                health.failures += 1
                health.state = "restarting"
                health.last_error = f"{type(exc).__name__}: {exc}"
                health.last_failure_at = time.time()
                delay = min(MAX_BACKOFF_S, interval_s * 2**streak)
                log.exception("background job %s failed; restarting in %.1fs", health.name, delay)
                continue
            health.runs += 1
            if streak:
                log.info("background job %s recovered after %d failures", health.name, streak)
            streak = 0
            health.state = "running"
            delay = interval_s

    def health(self) -> dict[str, dict[str, Any]]:
        """Each job's state (``running``/``restarting``/``stopped``) and failures."""
        return {
            name: {
                "state": h.state,
                "runs": h.runs,
                "failures": h.failures,
                "last_error": h.last_error,
            }
            for name, h in self._health.items()
        }

    @property
    def healthy(self) -> bool:
        return all(h.state == "running" for h in self._health.values())

    def stop(self) -> None:
        """Stop every job and wait for the threads; idempotent."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=10)
        for h in self._health.values():
            h.state = "stopped"
