"""Hash slots and the slot map, as Redis Cluster has them (pure: no I/O).

A key's slot is CRC16/XMODEM of the key — or of its ``{hash tag}`` — modulo
16,384, exactly as Redis Cluster computes it, so that redis-py's
``RedisCluster`` and ``redis-benchmark --cluster`` route keys as a Redis
cluster would. The :class:`SlotMap` says which group (one Raft group) owns
which slots and who that group's members are; today one group owns them all,
and sharding over many groups (issue #14) extends the same type.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SLOTS",
    "Member",
    "SlotMap",
    "crc16",
    "hash_tag",
    "key_slot",
    "redis_node_id",
]

#: Redis Cluster's number of hash slots.
SLOTS = 16_384


def _table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE = _table()


def crc16(data: bytes) -> int:
    """CRC16/XMODEM (poly 0x1021, init 0), the checksum Redis Cluster hashes keys with."""
    crc = 0
    table = _TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def hash_tag(key: bytes) -> bytes:
    """The part of ``key`` that is hashed: the text between the first ``{`` and the
    next ``}`` when it is not empty, else the whole key (Redis' rule)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def key_slot(key: bytes) -> int:
    """The hash slot (0-16383) of a Redis key."""
    return crc16(hash_tag(key)) & (SLOTS - 1)


def redis_node_id(node_id: str) -> str:
    """A Redis Cluster node id (40 hex characters) for an Amber node id.

    Derived, not stored: every member computes the same id for a peer, and a
    node keeps it across restarts.
    """
    return hashlib.sha1(b"amber-node:" + node_id.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class Member:
    """One member of a group as clients reach it: its RESP address and role."""

    node_id: str
    host: str
    port: int
    #: ``master`` (the group's Raft leader) or ``replica`` (a follower).
    role: str

    @property
    def redis_id(self) -> str:
        return redis_node_id(self.node_id)


@dataclass(frozen=True, slots=True)
class SlotMap:
    """Which group owns which slots, and each group's members; ``epoch`` orders versions.

    ``ranges`` are ``(first, last, group)`` with ``last`` inclusive, sorted,
    not overlapping.
    """

    epoch: int
    ranges: tuple[tuple[int, int, str], ...]
    groups: dict[str, tuple[Member, ...]]

    def __post_init__(self) -> None:
        previous = -1
        for first, last, group in self.ranges:
            if not previous < first <= last < SLOTS:
                raise ValueError(f"slot range {first}-{last} is out of order or out of bounds")
            if group not in self.groups:
                raise ValueError(f"slot range {first}-{last} names unknown group {group!r}")
            previous = last

    @classmethod
    def single(cls, group: str, members: tuple[Member, ...], epoch: int = 1) -> SlotMap:
        """One group owning every slot (a single Raft group)."""
        return cls(epoch, ((0, SLOTS - 1, group),), {group: members})

    def owner(self, slot: int) -> str | None:
        """The group that owns ``slot``, or None if no group does."""
        for first, last, group in self.ranges:
            if first <= slot <= last:
                return group
        return None

    def assigned(self) -> int:
        """How many slots some group owns."""
        return sum(last - first + 1 for first, last, _ in self.ranges)

    def slots_of(self, group: str) -> list[tuple[int, int]]:
        return [(first, last) for first, last, g in self.ranges if g == group]

    def master(self, group: str) -> Member | None:
        return next((m for m in self.groups[group] if m.role == "master"), None)

    def encode(self) -> bytes:
        """A compact JSON form (for a log entry or a status page); ``decode`` reverses it."""
        doc = {
            "e": self.epoch,
            "r": [list(r) for r in self.ranges],
            "g": {
                g: [[m.node_id, m.host, m.port, m.role] for m in members]
                for g, members in sorted(self.groups.items())
            },
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> SlotMap:
        doc: Any = json.loads(data)
        return cls(
            int(doc["e"]),
            tuple((int(a), int(b), str(g)) for a, b, g in doc["r"]),
            {
                str(g): tuple(Member(str(n), str(h), int(p), str(r)) for n, h, p, r in members)
                for g, members in doc["g"].items()
            },
        )
