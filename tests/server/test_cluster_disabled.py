"""A standalone ``amber serve`` refuses CLUSTER as a non-cluster Redis does."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from server_support import ServerProcess


@pytest.mark.parametrize("sub", ["INFO", "SLOTS", "NODES", "SHARDS", "MYID"])
def test_cluster_commands_answer_support_disabled(
    amber_server: ServerProcess, redis_server: Any, sub: str
) -> None:
    answers = []
    for client in (amber_server.redis(), redis_server):
        with pytest.raises(redis.ResponseError) as caught:
            client.execute_command("CLUSTER", sub)
        answers.append(str(caught.value))
    assert answers[0] == answers[1] == "This instance has cluster support disabled"


def test_info_cluster_and_multi_key_commands_stay_free(amber_server: ServerProcess) -> None:
    client = amber_server.redis()
    assert client.info("cluster") == {"cluster_enabled": 0}
    assert client.mset({"a": 1, "b": 2}) is True  # no CROSSSLOT outside --cluster-mode redis
