"""``amber cluster``: run a local cluster, show its status, change its members."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .app import app, console, fail
from .data import Password, Url, _client

cluster_app = typer.Typer(
    help="Run a local Raft cluster, show its status, add and remove members.",
    no_args_is_help=True,
)
app.add_typer(cluster_app, name="cluster")


@cluster_app.command("up")
def up(  # noqa: PLR0917 - typer maps parameters to options
    nodes: Annotated[int, typer.Option(help="How many nodes.")] = 3,
    data: Annotated[Path, typer.Option(help="Parent folder of the nodes' data.")] = Path(
        "cluster-data"
    ),
    base_port: Annotated[
        int, typer.Option(help="Node i listens on RESP base+10i, HTTP +1, raft +2.")
    ] = 7400,
    durability: Annotated[str, typer.Option(help="always | interval | never.")] = "always",
    seconds: Annotated[
        float, typer.Option(help="Stop after this many seconds (0: until Ctrl-C).")
    ] = 0.0,
    shards: Annotated[
        int | None,
        typer.Option(
            help="Shard the slots over this many Raft groups (Redis Cluster protocol, a "
            "generated static shard map); then --replicas nodes per group, not --nodes."
        ),
    ] = None,
    replicas: Annotated[
        int, typer.Option(help="With --shards: nodes per group (its leader included).")
    ] = 3,
) -> None:
    """Start a local cluster of real amber serve processes; Ctrl-C stops them all.

    The nodes share a random secret kept in DATA/cluster.secret and keep
    their data in DATA/n1, DATA/n2, ... so a second up resumes the cluster.
    With --shards S --replicas R it starts S*R nodes in S Raft groups that
    speak Redis Cluster (--cluster-mode redis) with the map in DATA/shard-map.json.
    """
    from amber.replication.local import LocalCluster  # noqa: PLC0415

    groups = shards or 1
    if shards is not None:
        if shards < 1 or replicas < 1 or shards * replicas > 18:
            fail("--shards and --replicas must be >= 1, with at most 18 nodes in all")
        nodes = shards * replicas
    elif not 1 <= nodes <= 9:
        fail("--nodes must be between 1 and 9")
    cluster = LocalCluster(
        data,
        nodes,
        base_port=base_port,
        durability=durability,
        redis_cluster=shards is not None,
        shards=groups,
    )
    try:
        cluster.start_all()
    except (RuntimeError, OSError) as exc:
        fail(str(exc))
    title = f"amber cluster: {nodes} nodes, data in {data}"
    if shards is not None:
        title = f"amber cluster: {shards} shards x {replicas} nodes, data in {data}"
    table = Table(title=title)
    columns = ("node", "pid", "RESP", "HTTP", "raft") + (("group",) if shards else ())
    for column in columns:
        table.add_column(column)
    for node in cluster.nodes:
        assert node.proc is not None
        table.add_row(
            node.node_id,
            str(node.proc.pid),
            f"{node.host}:{node.resp_port}",
            f"{node.host}:{node.http_port}",
            node.raft_address,
            *((f"g{cluster.group_of(node) + 1}",) if shards else ()),
        )
    console.print(table)
    console.print("ready", highlight=False)
    stop = False

    def on_signal(_signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
    try:
        while not stop and time.monotonic() < deadline:
            if not all(node.running for node in cluster.nodes):
                gone = [n.node_id for n in cluster.nodes if not n.running]
                console.print(f"node(s) {', '.join(gone)} exited; stopping the cluster")
                break
            time.sleep(0.2)
    finally:
        cluster.stop_all()
    console.print("stopped")


def _cluster_call(url: str, password: str | None, *args: str) -> Any:
    with _client(url, password) as client:
        reply = client.call("AMBER.CLUSTER", *args)
    if isinstance(reply, bytes):
        reply = reply.decode()
    return json.loads(reply) if isinstance(reply, str) and reply[:1] in "{[" else reply


@cluster_app.command("status")
def status(
    url: Url = "redis://127.0.0.1:7400",
    password: Password = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw JSON.")] = False,
) -> None:
    """Members, leader, term, commit/applied index, lag and health, as one node sees them."""
    info = _cluster_call(url, password, "STATUS")
    if as_json:
        print(json.dumps(info, indent=2))
        return
    console.print(
        f"node [bold]{info['node_id']}[/] is {info['state']}, leader "
        f"[bold]{info['leader']}[/], term {info['term']}, commit {info['commit_index']}, "
        f"applied {info['applied_index']} (lag {info['lag']}), revision {info['revision']}, "
        f"{'healthy' if info['healthy'] else 'UNHEALTHY'}"
    )
    table = Table()
    for column in ("member", "address", "connected", "match index"):
        table.add_column(column)
    for member in info["members"]:
        table.add_row(
            member["id"] + (" (this node)" if member["self"] else ""),
            member["address"],
            "yes" if member["connected"] else "no",
            "" if member.get("match_index") is None else str(member["match_index"]),
        )
    console.print(table)


@cluster_app.command("add")
def add(
    node_id: Annotated[str, typer.Argument(help="The new node's id.")],
    address: Annotated[str, typer.Argument(help="Its raft host:port.")],
    url: Url = "redis://127.0.0.1:7400",
    password: Password = None,
) -> None:
    """Add a member (start it first with --peers listing the cluster)."""
    console.print(_cluster_call(url, password, "ADD", node_id, address))


@cluster_app.command("remove")
def remove(
    node: Annotated[str, typer.Argument(help="The member's id or raft host:port.")],
    url: Url = "redis://127.0.0.1:7400",
    password: Password = None,
) -> None:
    """Remove a member."""
    console.print(_cluster_call(url, password, "REMOVE", node))


@cluster_app.command("transfer")
def transfer(
    node: Annotated[str | None, typer.Argument(help="Target id (default: the best).")] = None,
    url: Url = "redis://127.0.0.1:7400",
    password: Password = None,
) -> None:
    """Hand leadership to another member (ask the leader)."""
    console.print(_cluster_call(url, password, "TRANSFER", *([node] if node else [])))


def _mover(url: str, password: str | None, step: int) -> Any:
    from amber.cluster.reshard import Mover  # noqa: PLC0415

    seed = url.removeprefix("redis://").rstrip("/")
    return Mover(seed, password, step=step, progress=console.print)


def _slot_range(text: str) -> tuple[int, int]:
    first, _, last = text.partition("-")
    try:
        a, b = int(first), int(last or first)
    except ValueError:
        fail(f"--slots must be FIRST-LAST (e.g. 0-4095), not {text!r}")
    if not 0 <= a <= b <= 16383:
        fail(f"--slots {text}: slots are 0-16383, first <= last")
    return a, b


Step = Annotated[
    int,
    typer.Option(help="Slots moved per step: a step's slots are unavailable while it copies."),
]


@cluster_app.command("reshard")
def reshard(
    slots: Annotated[str, typer.Option(help="The slots to move, FIRST-LAST.")],
    to: Annotated[str, typer.Option(help="The group that gets them (e.g. g2).")],
    url: Url = "redis://127.0.0.1:7400",
    password: Password = None,
    step: Step = 128,
) -> None:
    """Move hash slots to another Raft group while clients keep reading and writing.

    Each step freezes a few slots in their group (clients get TRYAGAIN and
    retry), copies their keys, and switches the map. Run it again to finish
    a reshard that stopped halfway.
    """
    import redis  # noqa: PLC0415

    first, last = _slot_range(slots)
    mover = _mover(url, password, step)
    try:
        copied = mover.reshard(first, last, to)
    except (ValueError, RuntimeError, redis.RedisError) as exc:
        fail(f"reshard stopped: {exc} (run it again to finish)")
    finally:
        mover.close()
    console.print(f"moved slots {first}-{last} to {to}: {copied} keys copied")


@cluster_app.command("rebalance")
def rebalance(
    url: Url = "redis://127.0.0.1:7400",
    password: Password = None,
    step: Step = 128,
    add_group: Annotated[
        str | None,
        typer.Option(help="First add this new, empty group (its members already started)."),
    ] = None,
    member: Annotated[
        list[str] | None,
        typer.Option(help="A member of --add-group: ID=HOST:RESP_PORT[,HOST:HTTP_PORT]."),
    ] = None,
) -> None:
    """Even out the slots over all groups, optionally adding a new group first."""
    import redis  # noqa: PLC0415

    from amber.cluster.slots import Member  # noqa: PLC0415

    mover = _mover(url, password, step)
    try:
        if add_group is not None:
            members = []
            for i, text in enumerate(member or []):
                node_id, _, addresses = text.partition("=")
                resp, _, http = addresses.partition(",")
                host, _, port = resp.rpartition(":")
                if not node_id or not host or not port.isdigit():
                    fail(f"--member {text!r}: expected ID=HOST:RESP_PORT[,HOST:HTTP_PORT]")
                members.append(
                    Member(node_id, host, int(port), "master" if i == 0 else "replica", http)
                )
            if not members:
                fail("--add-group needs its members (--member ID=HOST:PORT, once per member)")
            mover.add_group(add_group, members)
            console.print(f"group {add_group} added with {len(members)} member(s)")
        copied = mover.rebalance()
    except (ValueError, RuntimeError, redis.RedisError) as exc:
        fail(f"rebalance stopped: {exc} (run it again to finish)")
    finally:
        mover.close()
    console.print(f"rebalanced: {copied} keys copied")
