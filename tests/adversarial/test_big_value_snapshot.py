"""Issue #12 item 10: a value bigger than the snapshot's history budget must snapshot.

``SET k <9 MiB>`` then ``SAVE`` answered ``ERR internal error: IndexError``
(the snapshot's slice of the watch history, 8 MiB by default, could not hold
the newest revision and indexed past the window), and the background
snapshotter kept failing until a smaller write arrived.
"""

from __future__ import annotations

from attack_support import SandboxedFactory, assert_responsive

BIG = 9 * 1024 * 1024


def test_a_value_over_the_snapshot_history_budget_snapshots_and_survives_restart(
    server_factory: SandboxedFactory,
) -> None:
    server = server_factory("--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"))
    client = server.redis(socket_timeout=60)
    value = (b"amber-" * (BIG // 6 + 1))[:BIG]
    assert client.set("t:big", value) is True
    assert client.save() is True
    assert client.save() is True  # and the one after it
    assert client.get("t:big") == value
    client.close()
    assert_responsive(server)
    assert "IndexError" not in server.stderr()
    assert server.stop() == 0

    again = server_factory(
        "--http-port", "-1", "--kvtext-port", "-1", ports=("--port", "0"), data=server.data
    )
    client = again.redis(socket_timeout=60)
    assert client.get("t:big") == value
    assert client.save() is True
    client.close()
    assert_responsive(again)
