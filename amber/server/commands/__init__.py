"""The command layer every front end shares (design: server → commands → node).

``REGISTRY`` is the one table of commands (name, arity, flags, handler); a
front end creates one :class:`ServerState` per server and a :class:`Session`
per client, and calls ``session.execute(args)``. Importing this package
registers every command.
"""

from . import (  # noqa: F401  (importing registers the commands)
    admin,
    cluster,
    documents,
    eventual,
    hashes,
    json_more,
    keyspace,
    pubsub,
    refused,
    slots_admin,
    strings,
    transactions,
)
from .keys import join_key, split_key
from .registry import REGISTRY, Command, CommandError, Later
from .scope import DirectReads, MustDrain, Scope
from .session import DRAIN, Session, error_reply
from .state import CommandStats, RuntimeConfig, ServerState

__all__ = [
    "DRAIN",
    "REGISTRY",
    "Command",
    "CommandError",
    "CommandStats",
    "DirectReads",
    "Later",
    "MustDrain",
    "RuntimeConfig",
    "Scope",
    "ServerState",
    "Session",
    "error_reply",
    "join_key",
    "split_key",
]
