"""The dispatcher: one thread that runs the callbacks of a database's watches.

Publishing never runs user code: a callback watch with something to deliver
is put on the dispatcher's ready set (a dict append under a lock, from the
publisher), and the dispatcher thread pumps it. A thread per database,
not per watch, so a thousand callback watches cost one thread; in exchange
the callbacks of one database run one at a time, so they should be short (a
slow one delays the others and may get them cut off with ``Lagged``; iterate
on a thread of your own instead).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Protocol

__all__ = ["LINGER", "Dispatcher", "Job"]

log = logging.getLogger(__name__)

#: How long a woken consumer waits for more events before taking them (s).
#: Without it a consumer faster than the writer wakes once per event, and
#: each wake-up costs the writer a GIL hand-off (its log write releases the
#: GIL): 1 ms turns thousands of hand-offs a second into at most a thousand,
#: for at most 1 ms of added latency.
LINGER = 0.001


class Job(Protocol):
    """What the dispatcher runs: a callback watch."""

    def pump(self) -> None:
        """Deliver what is ready (a bounded amount); re-arm or ask to be rescheduled."""

    def idle_check(self, now: float) -> float:
        """Send a progress mark if due; return when to check again (``inf``: never)."""


class Dispatcher:
    """Runs scheduled jobs on one daemon thread, started on first use."""

    def __init__(self, name: str = "amber-watch-dispatch") -> None:
        self._name = name
        self._cond = threading.Condition()
        self._ready: dict[Job, None] = {}
        self._timed: dict[Job, None] = {}
        self._next_check = math.inf
        self._thread: threading.Thread | None = None
        self._stopping = False

    def on_thread(self) -> bool:
        """Whether the caller is the dispatcher thread (a callback)."""
        return self._thread is threading.current_thread()

    def schedule(self, job: Job) -> None:
        """Pump ``job`` soon. Cheap and non-blocking: the publisher calls it."""
        with self._cond:
            if self._stopping and self._thread is None:
                return
            self._ready[job] = None
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def add_timed(self, job: Job, first_check: float) -> None:
        """Also call ``job.idle_check`` when it is due, starting at ``first_check``."""
        with self._cond:
            self._timed[job] = None
            self._next_check = min(self._next_check, first_check)
            self._cond.notify()

    def remove_timed(self, job: Job) -> None:
        with self._cond:
            self._timed.pop(job, None)

    def stop(self, timeout: float = 10) -> None:
        """Run what is scheduled, then end the thread (waits up to ``timeout``)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._ready and not self._stopping:
                    wait = self._next_check - time.monotonic()
                    if wait <= 0:
                        break
                    cond.wait(None if wait == math.inf else wait)
                if self._stopping and not self._ready:
                    return
                linger = bool(self._ready) and not self._stopping
            if linger:
                time.sleep(LINGER)
            with cond:
                jobs = list(self._ready)
                self._ready.clear()
                timed = list(self._timed) if self._next_check <= time.monotonic() else []
                if timed:
                    self._next_check = math.inf
            for job in jobs:
                try:
                    job.pump()
                except Exception:  # a bug in the pump itself: keep the others running
                    log.exception("watch dispatcher: pumping a watch failed")
            if timed:
                now = time.monotonic()
                soonest = math.inf
                for job in timed:
                    try:
                        soonest = min(soonest, job.idle_check(now))
                    except Exception:
                        log.exception("watch dispatcher: a progress check failed")
                with cond:
                    self._next_check = min(self._next_check, soonest)
