"""Hash slots against Redis Cluster's spec vectors and redis-py's own ``key_slot``."""

from __future__ import annotations

import random

import pytest
from redis.crc import key_slot as redis_key_slot

from amber.cluster.slots import SLOTS, Member, SlotMap, crc16, hash_tag, key_slot, redis_node_id
from amber.errors import InvalidArgument
from amber.server.settings import load_settings


def test_crc16_is_xmodem() -> None:
    # The Redis Cluster spec's check value for its CRC16 (XMODEM).
    assert crc16(b"123456789") == 0x31C3
    assert crc16(b"") == 0


@pytest.mark.parametrize(
    ("key", "slot"),
    [
        # CLUSTER KEYSLOT answers of a real Redis Cluster.
        (b"foo", 12182),
        (b"bar", 5061),
        (b"hello", 866),
        (b"somekey", 11058),
        (b"{user1000}.following", 3443),
        (b"{user1000}.followers", 3443),
    ],
)
def test_known_slots(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot == redis_key_slot(key)


def test_hash_tag_rules_of_the_spec() -> None:
    assert hash_tag(b"{user1000}.following") == b"user1000"
    assert hash_tag(b"foo{}{bar}") == b"foo{}{bar}"  # empty first tag: the whole key
    assert hash_tag(b"foo{{bar}}zap") == b"{bar"  # first '{' to the next '}'
    assert hash_tag(b"foo{bar}{zap}") == b"bar"  # only the first tag counts
    assert hash_tag(b"no}tag{") == b"no}tag{"
    assert hash_tag(b"{") == b"{"
    assert hash_tag(b"{}") == b"{}"


def test_matches_redis_py_on_random_keys() -> None:
    rng = random.Random(14)
    alphabet = b"ab{}x\x00\xff:"
    for _ in range(5000):
        key = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        assert key_slot(key) == redis_key_slot(key), key


def test_node_ids_are_40_hex_and_stable() -> None:
    a = redis_node_id("n1")
    assert len(a) == 40 and int(a, 16) >= 0
    assert a == redis_node_id("n1") != redis_node_id("n2")


def test_slot_map_single_group_and_encoding() -> None:
    members = (
        Member("n1", "127.0.0.1", 7400, "master"),
        Member("n2", "127.0.0.1", 7410, "replica"),
    )
    slot_map = SlotMap.single("g1", members, epoch=3)
    assert slot_map.assigned() == SLOTS
    assert slot_map.owner(0) == slot_map.owner(SLOTS - 1) == "g1"
    assert slot_map.master("g1") == members[0]
    assert SlotMap.decode(slot_map.encode()) == slot_map
    assert len(slot_map.encode()) < 120


def test_slot_map_rejects_overlaps_and_unknown_groups() -> None:
    members = (Member("n1", "h", 1, "master"),)
    with pytest.raises(ValueError, match="out of order"):
        SlotMap(1, ((0, 100, "g"), (100, 200, "g")), {"g": members})
    with pytest.raises(ValueError, match="unknown group"):
        SlotMap(1, ((0, 100, "h"),), {"g": members})
    with pytest.raises(ValueError, match="out of order"):
        SlotMap(1, ((0, SLOTS, "g"),), {"g": members})
    partial = SlotMap(1, ((0, 99, "g"), (200, 299, "g")), {"g": members})
    assert partial.assigned() == 200 and partial.owner(150) is None
    assert partial.slots_of("g") == [(0, 99), (200, 299)]


def test_cluster_mode_settings() -> None:
    with pytest.raises(InvalidArgument, match="raft or redis"):
        load_settings({"cluster_mode": "sharded"}, environ={})
    with pytest.raises(InvalidArgument, match="needs a cluster"):
        load_settings({"cluster_mode": "redis"}, environ={})
    with pytest.raises(InvalidArgument, match="id=host:port"):
        load_settings({"node_id": "n1", "cluster_resp_peers": "127.0.0.1:7410"}, environ={})
    settings = load_settings(
        {"node_id": "n1", "cluster_mode": "redis", "cluster_resp_peers": "n2=127.0.0.1:7410"},
        environ={},
    )
    assert settings.cluster_mode == "redis"
