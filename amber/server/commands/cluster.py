"""Cluster commands: ``AMBER.CLUSTER`` and Redis Cluster's ``READONLY``/``READWRITE``.

In a cluster every read waits for a Raft log barrier first (linearizable,
see :mod:`amber.replication.cluster`). ``READONLY`` switches the connection
to stale reads — this replica's state, no round trip — as Redis Cluster's
``READONLY`` lets a client read from a replica; ``READWRITE`` switches back.
Alone, both only set the flag: every read is already linearizable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from ...cluster.slots import Member, SlotMap, key_slot, redis_node_id
from .registry import REGISTRY, CommandError, arity_error
from .replies import Simple, Verbatim
from .session import error_reply

command = REGISTRY.command
OK = Simple("OK")


@command("AMBER.CLUSTER", -1, "admin", group="amber")
def amber_cluster(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``AMBER.CLUSTER [STATUS | ADD id host:port | REMOVE id | TRANSFER [id]]``.

    STATUS (the default) answers JSON: members, leader, term, commit and
    applied index, lag, health. The changes wait for the cluster's
    confirmation off the event loop and answer ``OK``.
    """
    db = session.state.db
    action = args[1].decode(errors="replace").lower() if len(args) > 1 else "status"
    if action == "status":
        if len(args) > 2:
            raise arity_error("amber.cluster")
        status = db.cluster_status()
        if status is None:
            raise CommandError("this server is not in a cluster (start it with --node-id)")
        return json.dumps(status).encode()
    if action not in ("add", "remove", "transfer"):
        raise CommandError(
            f"unknown AMBER.CLUSTER subcommand {action!r}; try STATUS, ADD, REMOVE, TRANSFER"
        )
    words = [a.decode(errors="replace") for a in args[2:]]

    async def run() -> Any:
        try:
            await asyncio.to_thread(db.cluster_change, action, *words)
        except Exception as exc:
            return error_reply(exc)
        return OK

    return asyncio.get_running_loop().create_task(run())


@command("READONLY", 1, "fast", group="cluster")
def readonly(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Stale reads on this connection: this replica's state, without a log barrier."""
    session.stale_reads = True
    return OK


@command("READWRITE", 1, "fast", group="cluster")
def readwrite(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Linearizable reads again on this connection (the default)."""
    session.stale_reads = False
    return OK


# -- Redis Cluster protocol (``--cluster-mode redis``) ----------------------------

CLUSTER_DISABLED = "This instance has cluster support disabled"
#: The group name when no shard map is given: this Raft group owns every slot.
GROUP = "g1"


class RedisClusterView:
    """This server's Redis Cluster view: its own Raft group live, other groups as mapped.

    This group's Raft leader is its master, followers its replicas; that part
    is recomputed per call, so a leader change shows at once. Other groups
    (from a static ``--shard-map``) are shown as listed — first member master
    — since this node cannot know their live leader; a client learns it by
    following ``-MOVED``. Members of this group whose RESP address is not
    known (added online) are left out, not guessed.
    """

    def __init__(
        self,
        db: Any,
        host: str,
        resp_peers: dict[str, str],
        config: Any,
        *,
        shard_map: SlotMap | None = None,
        node_id: str = "",
    ) -> None:
        self.db = db
        self.host = host
        self.resp_peers = dict(resp_peers)
        self._config = config
        self.shard_map = shard_map
        self.group = GROUP
        #: slot -> ``MOVED`` reply target for slots another group owns (empty: none).
        self.foreign: dict[int, str] = {}
        if shard_map is not None:
            self.group = shard_map.group_of(node_id) or GROUP
            for name, members in shard_map.groups.items():
                for m in members:
                    if name == self.group and m.node_id != node_id:
                        self.resp_peers.setdefault(m.node_id, f"{m.host}:{m.port}")
            for first, last, name in shard_map.ranges:
                if name != self.group:
                    target = shard_map.groups[name][0]
                    address = f"{target.host}:{target.port}"
                    self.foreign.update((slot, address) for slot in range(first, last + 1))

    @property
    def sharded(self) -> bool:
        """Whether other groups own slots (keys must then be checked for ``MOVED``)."""
        return bool(self.foreign)

    def moved(self, key: bytes) -> str | None:
        """``MOVED <slot> <host:port>`` if another group owns ``key``'s slot, else None."""
        slot = key_slot(key)
        target = self.foreign.get(slot)
        return None if target is None else f"MOVED {slot} {target}"

    def own_port(self) -> int:
        return int(self._config.values.get("port", "0"))

    def status(self) -> dict[str, Any]:
        status = self.db.cluster_status()
        assert status is not None  # --cluster-mode redis needs --node-id
        return dict(status)

    def slot_map(self, status: dict[str, Any]) -> SlotMap:
        members = []
        for member in status["members"]:
            if member["self"]:
                host, port = self.host, self.own_port()
            elif member["id"] in self.resp_peers:
                host, _, text = self.resp_peers[member["id"]].rpartition(":")
                port = int(text)
            else:
                continue
            role = "master" if member["id"] == status["leader"] else "replica"
            members.append(Member(member["id"], host, port, role))
        members.sort(key=lambda m: (m.role != "master", m.node_id))
        if self.shard_map is None:
            return SlotMap.single(GROUP, tuple(members))
        groups = dict(self.shard_map.groups)
        groups[self.group] = tuple(members)
        return SlotMap(self.shard_map.epoch, self.shard_map.ranges, groups)


def _node_entry(member: Member) -> list[Any]:
    return [member.host.encode(), member.port, member.redis_id.encode()]


def _cluster_nodes(view: RedisClusterView, status: dict[str, Any], slot_map: SlotMap) -> str:
    """CLUSTER NODES' lines; this group's bus port is the member's Raft port, others' 0."""
    raft = {m["id"]: m for m in status["members"]}
    lines = []
    for group, members in slot_map.groups.items():
        master = slot_map.master(group)
        slots = " ".join(f"{a}-{b}" if a != b else str(a) for a, b in slot_map.slots_of(group))
        for member in members:
            info = raft.get(member.node_id) if group == view.group else None
            bus = info["address"].rpartition(":")[2] if info else "0"
            flags = ("myself," if info and info["self"] else "") + (
                "master" if member.role == "master" else "slave"
            )
            of = "-" if member.role == "master" or master is None else master.redis_id
            link = "connected" if info is None or info["connected"] else "disconnected"
            line = (
                f"{member.redis_id} {member.host}:{member.port}@{bus} {flags} {of} 0 0 "
                f"{slot_map.epoch} {link}"
            )
            lines.append(line + (f" {slots}" if member.role == "master" and slots else ""))
    return "".join(line + "\n" for line in lines)


@command("CLUSTER", -2, "", group="cluster")
def cluster(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``CLUSTER KEYSLOT | SLOTS | SHARDS | NODES | INFO | MYID``, in ``--cluster-mode redis``."""
    view: RedisClusterView | None = session.state.redis_cluster
    if view is None:
        raise CommandError(CLUSTER_DISABLED)
    sub = args[1].decode(errors="replace").upper()
    if sub == "KEYSLOT":
        if len(args) != 3:
            raise arity_error("cluster|keyslot")
        return key_slot(args[2])
    if len(args) != 2:
        raise arity_error(f"cluster|{sub.lower()}")
    status = view.status()
    if sub == "MYID":
        return redis_node_id(status["node_id"]).encode()
    slot_map = view.slot_map(status)
    # This group without a leader serves no slot now: clients retry.
    served = [g for g in slot_map.groups if g != view.group or slot_map.master(g) is not None]
    if sub == "SLOTS":
        return [
            [first, last, *(_node_entry(m) for m in slot_map.groups[group])]
            for first, last, group in slot_map.ranges
            if group in served
        ]
    if sub == "SHARDS":
        return [
            {
                b"slots": [n for a, b in slot_map.slots_of(group) for n in (a, b)],
                b"nodes": [
                    {
                        b"id": m.redis_id.encode(),
                        b"port": m.port,
                        b"ip": m.host.encode(),
                        b"endpoint": m.host.encode(),
                        b"role": m.role.encode(),
                        b"replication-offset": (
                            status["commit_index"] if group == view.group else 0
                        ),
                        b"health": b"online",
                    }
                    for m in members
                ],
            }
            for group, members in slot_map.groups.items()
        ]
    if sub == "NODES":
        return Verbatim(_cluster_nodes(view, status, slot_map))
    if sub == "INFO":
        ok = slot_map.master(view.group) is not None and status["has_quorum"]
        mine = sum(b - a + 1 for a, b in slot_map.slots_of(view.group))
        fields = {
            "cluster_enabled": 1,
            "cluster_state": "ok" if ok else "fail",
            "cluster_slots_assigned": slot_map.assigned(),
            "cluster_slots_ok": slot_map.assigned() - (0 if ok else mine),
            "cluster_slots_pfail": 0,
            "cluster_slots_fail": 0 if ok else mine,
            "cluster_known_nodes": sum(len(m) for m in slot_map.groups.values()),
            "cluster_size": len(slot_map.groups),
            # A leader change is Redis' failover: the Raft term counts them.
            "cluster_current_epoch": status["term"],
            "cluster_my_epoch": slot_map.epoch,
        }
        return Verbatim("".join(f"{k}:{v}\r\n" for k, v in fields.items()))
    raise CommandError(
        f"unknown subcommand '{args[1].decode(errors='replace')}'. Try CLUSTER HELP."
    )
