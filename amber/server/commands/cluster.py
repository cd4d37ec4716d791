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

from ...cluster.slots import SLOTS, Member, ShardState, SlotMap, key_slot, redis_node_id
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

    The map is the group's replicated :class:`ShardState` (store metadata
    ``"slots"``, written by ``AMBER.SLOTS``) once a reshard has written one,
    else the static ``--shard-map``, else this group owning every slot. It
    is re-derived whenever the replicated metadata changes, so a slot that
    moves shows at once. This group's Raft leader is its master, followers
    its replicas (recomputed per call); other groups are shown as mapped —
    first member master — since this node cannot know their live leader; a
    client learns it by following ``-MOVED``. Members of this group whose
    RESP address is not known (added online) are left out, not guessed.
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
        http: str = "",
    ) -> None:
        self.db = db
        self.host = host
        self.resp_peers = dict(resp_peers)
        self._config = config
        self.static = shard_map
        self.node_id = node_id
        self.http = http
        self._version: int | None = None
        self._state = ShardState(GROUP, SlotMap.single(GROUP, ()))
        #: Per slot: ``MOVED`` target for slots another group owns, else None.
        self._moved: list[str | None] = [None] * SLOTS
        self._sharded = False
        #: ``AMBER.SLOTS EXPORT``'s key list of the range being moved (slots_admin).
        self.exports: Any = None
        self._refresh()

    def _refresh(self) -> ShardState:
        """The current shard state, re-derived when the replicated metadata changed."""
        version, doc = self.db.replicated_meta("slots")
        if version == self._version:
            return self._state
        if doc is not None:
            state = ShardState.from_doc(doc)
        elif self.static is not None:
            state = ShardState(self.static.group_of(self.node_id) or GROUP, self.static)
        else:
            state = ShardState(GROUP, SlotMap.single(GROUP, ()))
        moved: list[str | None] = [None] * SLOTS
        for first, last, name in state.map.ranges:
            if name != state.group:
                target = state.map.groups[name][0]
                address = f"{target.host}:{target.port}"
                moved[first : last + 1] = [address] * (last - first + 1)
        for name, members in state.map.groups.items():
            if name == state.group:
                for m in members:
                    if m.node_id != self.node_id:
                        self.resp_peers.setdefault(m.node_id, f"{m.host}:{m.port}")
        self._state, self._moved, self._version = state, moved, version
        # Several groups, or slots on their way out: every key must be checked.
        self._sharded = len(state.map.groups) > 1 or bool(state.frozen)
        return state

    @property
    def group(self) -> str:
        return self._refresh().group

    @property
    def sharded(self) -> bool:
        """Whether other groups own slots (keys must then be checked for ``MOVED``)."""
        self._refresh()
        return self._sharded

    def moved(self, key: bytes) -> str | None:
        """Why this node does not serve ``key`` now, as an error reply text, or None.

        ``MOVED <slot> <host:port>`` if another group owns its slot;
        ``TRYAGAIN`` while its slot is frozen for a move out of this group.
        """
        state = self._refresh()
        if not self._sharded and not state.frozen:
            return None
        slot = key_slot(key)
        target = self._moved[slot]
        if target is not None:
            return f"MOVED {slot} {target}"
        if slot in state.frozen:
            return f"TRYAGAIN slot {slot} is moving to another group; retry"
        return None

    def not_served(self, command: Any, args: list[bytes]) -> str | None:
        """``moved`` for a command's (first) key, if it has one."""
        first = command.keys[0]
        return self.moved(args[first]) if 0 < first < len(args) else None

    def owner(self, key: bytes) -> tuple[int, str, Member | None]:
        """Where ``key`` is served now: ``(slot, verdict, member)``.

        ``verdict`` is ``here``, ``moving`` (frozen for a move out: retry)
        or ``moved`` (``member`` is the owning group's first listed member).
        One decision for every front end: RESP answers ``MOVED``/``TRYAGAIN``,
        HTTP redirects (307) or answers 503.
        """
        state = self._refresh()
        slot = key_slot(key)
        if self._moved[slot] is not None:
            owner = state.map.owner(slot)
            return slot, "moved", state.map.groups[owner][0] if owner is not None else None
        if slot in state.frozen:
            return slot, "moving", None
        return slot, "here", None

    def own_port(self) -> int:
        return int(self._config.values.get("port", "0"))

    def status(self) -> dict[str, Any]:
        status = self.db.cluster_status()
        assert status is not None  # --cluster-mode redis needs --node-id
        return dict(status)

    def live_members(self, status: dict[str, Any]) -> tuple[Member, ...]:
        """This group's members with their RESP addresses, the Raft leader first as master."""
        state = self._refresh()
        http = {m.node_id: m.http for m in state.map.groups.get(state.group, ())}
        members = []
        for member in status["members"]:
            if member["self"]:
                host, port = self.host, self.own_port()
                http[member["id"]] = self.http or http.get(member["id"], "")
            elif member["id"] in self.resp_peers:
                host, _, text = self.resp_peers[member["id"]].rpartition(":")
                port = int(text)
            else:
                continue
            role = "master" if member["id"] == status["leader"] else "replica"
            members.append(Member(member["id"], host, port, role, http.get(member["id"], "")))
        members.sort(key=lambda m: (m.role != "master", m.node_id))
        return tuple(members)

    def shard_state(self, status: dict[str, Any]) -> ShardState:
        """The current state with this group's live members (what ``AMBER.SLOTS GET`` shows)."""
        state = self._refresh()
        groups = dict(state.map.groups)
        groups[state.group] = self.live_members(status)
        return ShardState(
            state.group,
            SlotMap(state.map.epoch, state.map.ranges, groups),
            state.frozen,
            state.importing,
        )

    def slot_map(self, status: dict[str, Any]) -> SlotMap:
        return self.shard_state(status).map


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
