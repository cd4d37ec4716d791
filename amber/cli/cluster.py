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
