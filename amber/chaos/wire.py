# mypy: disable-error-code="no-untyped-call"
"""How the harness talks to cluster members: RESP clients, status, and what an error means.

Every client is a redis-py connection with **no retries** (redis-py retries
a command on a dropped connection by default, which would turn one
invocation into two) and short socket timeouts, so a paused or cut-off node
shows up as a timeout instead of a hang.

:func:`outcome` is the one place that decides what an error says about an
operation, Jepsen-style:

- a connection that was never established (``… connecting to …``): the
  command was not sent → ``fail``;
- ``TRYAGAIN`` (:class:`~amber.errors.Unavailable`, or a slot frozen for a
  move: certainly not applied), ``MOVED`` (another group owns the key; the
  workload follows it) and ``CONDITION`` (a cas whose compare did not hold) → ``fail``;
- ``UNKNOWN`` (:class:`~amber.errors.UnknownOutcome`), a timeout or a lost
  connection, or any other error → ``info`` for writes, cas and adds;
- any error on a read → ``fail``: a read has no effect.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..replication.local import LocalCluster, LocalNode

__all__ = ["error_code", "find_leader", "outcome", "resp_client", "status"]


def resp_client(node: LocalNode, timeout: float = 2.5) -> redis.Redis:
    """A client of ``node``'s RESP port that never retries on its own."""
    return redis.Redis(
        host=node.host,
        port=node.resp_port,
        socket_timeout=timeout,
        socket_connect_timeout=min(timeout, 1.0),
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )


#: Replies redis-py turns into their own class, dropping the code from the message.
_CLUSTER_CODES: tuple[tuple[type[redis.ResponseError], str], ...] = (
    (redis.exceptions.MovedError, "MOVED"),  # before AskError: it is a subclass
    (redis.exceptions.AskError, "ASK"),
    (redis.exceptions.TryAgainError, "TRYAGAIN"),
    (redis.exceptions.ClusterDownError, "CLUSTERDOWN"),
    (redis.exceptions.ClusterCrossSlotError, "CROSSSLOT"),
)


def error_code(exc: BaseException) -> str:
    """A short name for an error: the reply's first word, or the exception's class."""
    for cls, code in _CLUSTER_CODES:
        if isinstance(exc, cls):
            return code
    if isinstance(exc, redis.ResponseError):
        return str(exc).split(" ", 1)[0] or "ERR"
    if isinstance(exc, redis.RedisError) and "connecting to" in str(exc):
        return "connect"
    return type(exc).__name__


def outcome(f: str, exc: BaseException) -> Literal["fail", "info"]:
    """The completion type of operation ``f`` that raised ``exc`` (see the module doc)."""
    if f in ("read", "read-set"):
        return "fail"
    code = error_code(exc)
    return "fail" if code in ("TRYAGAIN", "MOVED", "CONDITION", "connect") else "info"


def status(node: LocalNode, timeout: float = 2.0) -> dict[str, Any]:
    """``AMBER.CLUSTER STATUS`` of one member, decoded."""
    client = resp_client(node, timeout)
    try:
        reply = client.execute_command("AMBER.CLUSTER")
    finally:
        client.close()
    result: dict[str, Any] = json.loads(reply)
    return result


def find_leader(
    cluster: LocalCluster, members: list[LocalNode], timeout: float = 10.0
) -> LocalNode | None:
    """The member that says it leads and that a majority of ``members`` name; None if none
    does within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        named: dict[str, int] = {}
        leading: set[str] = set()
        for node in members:
            if not node.running:
                continue
            try:
                view = status(node, 1.0)
            except (redis.RedisError, OSError, ValueError):
                continue
            if view.get("leader"):
                named[view["leader"]] = named.get(view["leader"], 0) + 1
            if view.get("state") == "leader":
                leading.add(view["node_id"])
        for node_id, votes in named.items():
            if node_id in leading and votes > len(members) // 2:
                return cluster.node(node_id)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.1)
