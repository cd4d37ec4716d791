"""Watch: ordered, resumable streams of the changes to a database, with diffs.

- :mod:`.event` — what is delivered: ``Event``, ``EventBatch``, ``Progress``;
- :mod:`.history` — the bounded window of past revisions and its snapshot form;
- :mod:`.watcher` — one subscription's filter, replay cursor and bounded queue
  (sans-I/O: no threads, never blocks);
- :mod:`.hub` — ``WatchHub``: publishes applied batches, indexes watchers;
- :mod:`.stream` — ``Watch``: the sync, async and callback consumers;
- :mod:`.dispatch` — the one thread per database that runs callbacks.
"""

from .event import Event, EventBatch, EventType, Progress
from .hub import WatchHub
from .stream import Batches, Watch, open_watch
from .watcher import Watcher, WatchFilter

__all__ = [
    "Batches",
    "Event",
    "EventBatch",
    "EventType",
    "Progress",
    "Watch",
    "WatchFilter",
    "WatchHub",
    "Watcher",
    "open_watch",
]
