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

from ..model.names import join_key

__all__ = [
    "SLOTS",
    "Member",
    "ShardState",
    "SlotGuard",
    "SlotMap",
    "crc16",
    "hash_tag",
    "key_slot",
    "load_shard_map",
    "parse_shard_map",
    "redis_node_id",
    "split_slots",
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
    #: Its HTTP ``host:port``, when the map names it ("" if not: HTTP cannot redirect there).
    http: str = ""

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

    def group_of(self, node_id: str) -> str | None:
        """The group ``node_id`` is a member of, or None."""
        return next(
            (g for g, members in self.groups.items() if any(m.node_id == node_id for m in members)),
            None,
        )

    def encode(self) -> bytes:
        """A compact JSON form (for a log entry or a status page); ``decode`` reverses it."""
        doc = {
            "e": self.epoch,
            "r": [list(r) for r in self.ranges],
            "g": {
                g: [[m.node_id, m.host, m.port, m.role, m.http] for m in members]
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
                str(g): tuple(
                    Member(str(m[0]), str(m[1]), int(m[2]), str(m[3]), str(m[4])) for m in members
                )
                for g, members in doc["g"].items()
            },
        )


def split_slots(groups: int) -> list[tuple[int, int]]:
    """``groups`` contiguous slot ranges of (nearly) equal size covering every slot."""
    bounds = [SLOTS * i // groups for i in range(groups + 1)]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(groups)]


def parse_shard_map(doc: Any) -> SlotMap:
    """A static shard map from its document (JSON or TOML), validated.

    ``{"epoch": 1, "groups": [{"name": "g1", "slots": [[0, 8191]],
    "members": [{"id": "n1", "resp": "127.0.0.1:7400"}, ...]}, ...]}``.
    Every slot must be owned exactly once and every member id appear once, so
    that two nodes never both serve a key. A group's first member is listed
    as its master: a node cannot know another group's live leader, and a
    client that reaches a follower is served anyway (followers forward).
    """
    if not isinstance(doc, dict):
        raise ValueError("a shard map is an object with 'epoch' and 'groups'")
    epoch = doc.get("epoch", 1)
    if not isinstance(epoch, int) or epoch < 1:
        raise ValueError("shard map: 'epoch' must be an integer >= 1")
    raw_groups = doc.get("groups")
    if not isinstance(raw_groups, list) or not raw_groups:
        raise ValueError("shard map: 'groups' must be a non-empty list")
    groups: dict[str, tuple[Member, ...]] = {}
    ranges: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    for raw in raw_groups:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise ValueError("shard map: every group needs a 'name'")
        name = raw["name"]
        if name in groups:
            raise ValueError(f"shard map: group {name!r} is given twice")
        members = []
        for i, m in enumerate(raw.get("members") or []):
            if not isinstance(m, dict) or not isinstance(m.get("id"), str):
                raise ValueError(f"shard map: group {name!r}: a member is {{id, resp}}")
            node_id, resp = m["id"], m.get("resp")
            if not _is_address(str(resp)):
                raise ValueError(f"shard map: member {node_id!r}: resp must be host:port")
            host, _, port = str(resp).rpartition(":")
            http = m.get("http", "")
            if http and not _is_address(str(http)):
                raise ValueError(f"shard map: member {node_id!r}: http must be host:port")
            if node_id in seen:
                raise ValueError(f"shard map: member {node_id!r} is in more than one group")
            seen.add(node_id)
            role = "master" if i == 0 else "replica"
            members.append(Member(node_id, host, int(port), role, str(http)))
        if not members:
            raise ValueError(f"shard map: group {name!r} has no members")
        groups[name] = tuple(members)
        for r in raw.get("slots") or []:
            if not (isinstance(r, list) and len(r) == 2 and all(isinstance(x, int) for x in r)):
                raise ValueError(f"shard map: group {name!r}: a slot range is [first, last]")
            ranges.append((r[0], r[1], name))
    ranges.sort()
    expected = 0
    for first, last, name in ranges:
        if first != expected or last < first or last >= SLOTS:
            if first < expected:
                raise ValueError(f"shard map: slot {first} is owned twice (group {name!r})")
            if first > expected:
                raise ValueError(f"shard map: slots {expected}-{first - 1} have no owner")
            raise ValueError(f"shard map: bad slot range {first}-{last} (group {name!r})")
        expected = last + 1
    if expected != SLOTS:
        raise ValueError(f"shard map: slots {expected}-{SLOTS - 1} have no owner")
    return SlotMap(epoch, tuple(ranges), groups)


def _is_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def load_shard_map(path: str) -> SlotMap:
    """Read and validate a shard map file: TOML if it ends in ``.toml``, else JSON."""
    import tomllib  # noqa: PLC0415

    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = tomllib.loads(data.decode()) if path.endswith(".toml") else json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"shard map {path}: {exc}") from None
    return parse_shard_map(doc)


def _ranges_of(slots: frozenset[int]) -> list[list[int]]:
    """``[[first, last], ...]`` covering ``slots``, sorted."""
    out: list[list[int]] = []
    for slot in sorted(slots):
        if out and out[-1][1] == slot - 1:
            out[-1][1] = slot
        else:
            out.append([slot, slot])
    return out


def _slots_in(ranges: Any) -> frozenset[int]:
    return frozenset(slot for a, b in ranges for slot in range(int(a), int(b) + 1))


@dataclass(frozen=True, slots=True)
class ShardState:
    """One group's replicated view of the cluster: the slot map plus what is moving.

    Every group keeps its own copy in its Raft log (store metadata
    ``"slots"``), so a group's members agree on it at every log position and
    a restart recovers it. ``epoch`` orders maps across groups: a group
    adopts a map only with a greater epoch. ``frozen`` are this group's slots
    being moved out: no write to them applies, no read is answered.
    ``importing`` are slots being moved in: the mover's copies may be
    written, clients are not served until the map gives them to this group.
    """

    group: str
    map: SlotMap
    frozen: frozenset[int] = frozenset()
    importing: frozenset[int] = frozenset()

    def to_doc(self) -> dict[str, Any]:
        return {
            "epoch": self.map.epoch,
            "group": self.group,
            "ranges": [list(r) for r in self.map.ranges],
            "groups": {
                g: [[m.node_id, m.host, m.port, m.http] for m in members]
                for g, members in sorted(self.map.groups.items())
            },
            "frozen": _ranges_of(self.frozen),
            "importing": _ranges_of(self.importing),
        }

    @classmethod
    def from_doc(cls, doc: Any) -> ShardState:
        groups = {
            str(g): tuple(
                Member(str(n), str(h), int(p), "master" if i == 0 else "replica", str(http))
                for i, (n, h, p, http) in enumerate(members)
            )
            for g, members in doc["groups"].items()
        }
        ranges = tuple((int(a), int(b), str(g)) for a, b, g in doc["ranges"])
        return cls(
            str(doc["group"]),
            SlotMap(int(doc["epoch"]), ranges, groups),
            _slots_in(doc["frozen"]),
            _slots_in(doc["importing"]),
        )

    def owned(self) -> frozenset[int]:
        return frozenset(s for a, b in self.map.slots_of(self.group) for s in range(a, b + 1))

    def guard(self) -> SlotGuard:
        return SlotGuard(self)


class SlotGuard:
    """Refuses, when a batch applies, writes to slots this group does not serve.

    The front ends check a key's slot when a command arrives, but a write
    checked before a slot froze or moved can reach the log after it; the
    guard runs inside ``Store.apply`` — deterministic, in log order, on every
    member — so such a write fails (``TRYAGAIN``: retried, it is redirected)
    instead of landing in a group that no longer owns its key.
    """

    __slots__ = ("_allowed", "_owned", "frozen", "group")

    def __init__(self, state: ShardState) -> None:
        owned = bytearray(SLOTS)
        for slot in state.owned():
            owned[slot] = 1
        allowed = bytearray(owned)
        for slot in state.importing:
            allowed[slot] = 1
        for slot in state.frozen:
            allowed[slot] = 0
        self._owned = bytes(owned)
        self._allowed = bytes(allowed)
        self.frozen = bool(state.frozen)
        self.group = state.group

    def owns(self, table: str, key: str) -> bool:
        """Whether the map gives ``(table, key)``'s slot to this group (frozen or not)."""
        return self._owned[key_slot(join_key(table, key).encode())] == 1

    def refusal(self, table: str, key: str) -> str | None:
        """Why a write to ``(table, key)`` may not apply here, or None."""
        slot = key_slot(join_key(table, key).encode())
        if self._allowed[slot]:
            return None
        return (
            f"slot {slot} is not served by group {self.group!r} now "
            "(moving or moved); retry to be redirected"
        )
