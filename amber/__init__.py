"""Amber: a persistent, replicated document key-value database for Python.

>>> import amber, tempfile
>>> with amber.open(tempfile.mkdtemp()) as db:
...     accounts = db.table("accounts")
...     _ = accounts.put("42", {"user": "ada", "tags": ["x"]})
...     accounts.merge("42", {"age": 36, "tags": None})
...     accounts.get("42")
{'user': 'ada', 'age': 36}
"""

from typing import TYPE_CHECKING, Any

from . import errors
from .config import Config, Limits
from .database import (
    Compare,
    Database,
    Delete,
    DropTable,
    Entry,
    Merge,
    Page,
    Put,
    Table,
    Transaction,
    TxnResult,
    open,
    open_cluster,
)
from .model import FrozenDict, FrozenList, diff, merge_patch, new_id, thaw
from .replication.config import ClusterConfig
from .watch import Event, EventBatch, Progress, Watch

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Client",
    "ClusterConfig",
    "Compare",
    "Config",
    "Database",
    "Delete",
    "DropTable",
    "Entry",
    "Event",
    "EventBatch",
    "FrozenDict",
    "FrozenList",
    "Limits",
    "Merge",
    "Page",
    "Progress",
    "Put",
    "Table",
    "Transaction",
    "TxnResult",
    "Watch",
    "__version__",
    "diff",
    "errors",
    "merge_patch",
    "new_id",
    "open",
    "open_cluster",
    "thaw",
]


if TYPE_CHECKING:
    from .client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    """``Client``/``AsyncClient`` load redis-py on first use: embedded users skip it."""
    if name in ("AsyncClient", "Client"):
        from . import client  # noqa: PLC0415

        return getattr(client, name)
    raise AttributeError(f"module 'amber' has no attribute {name!r}")
