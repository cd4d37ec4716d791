"""``amber serve``: the Redis-protocol, HTTP and KV-text server on one data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amber.errors import AmberError

from .app import app, fail


def _default(value: str) -> str:
    """``[default: value]`` for a help text (escaped: rich markup would eat the brackets).

    The options themselves default to None so that the environment and the
    config file can fill them: typer cannot show those defaults by itself.
    """
    return f"\\[default: {value}]"


@app.command()
def serve(  # noqa: PLR0917  (typer maps each option to a parameter)
    data: Annotated[
        str | None, typer.Option(help="Data folder (or backend URL). " + _default("data"))
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="RESP port; 0: a free one, -1: off. " + _default("7379"))
    ] = None,
    http_port: Annotated[
        int | None, typer.Option(help="HTTP port; 0: a free one, -1: off. " + _default("7380"))
    ] = None,
    kvtext_port: Annotated[
        int | None, typer.Option(help="KV text port; 0: a free one, -1: off. " + _default("4040"))
    ] = None,
    tls_port: Annotated[
        int | None,
        typer.Option(
            help="RESP over TLS on this port (with or without the plain --port; "
            "--port -1 turns that off); 0: a free one. " + _default("-1, off"),
        ),
    ] = None,
    http_tls_port: Annotated[
        int | None,
        typer.Option(help="HTTPS on this port; 0: a free one. " + _default("-1, off")),
    ] = None,
    tls_cert_file: Annotated[
        Path | None,
        typer.Option(help="TLS: the server's certificate (PEM), for both TLS ports."),
    ] = None,
    tls_key_file: Annotated[
        Path | None, typer.Option(help="TLS: the certificate's private key (PEM).")
    ] = None,
    tls_ca_cert_file: Annotated[
        Path | None,
        typer.Option(help="TLS: the CA (PEM) that must sign client certificates."),
    ] = None,
    tls_auth_clients: Annotated[
        str | None,
        typer.Option(
            help="TLS client certificates: yes (required; needs --tls-ca-cert-file) | "
            "optional (verified if presented) | no. " + _default("yes, as in Redis"),
        ),
    ] = None,
    bind: Annotated[
        str | None, typer.Option(help="Address to listen on. " + _default("127.0.0.1"))
    ] = None,
    durability: Annotated[
        str | None, typer.Option(help="always | interval | never. " + _default("always"))
    ] = None,
    requirepass: Annotated[
        str | None, typer.Option(help="Password clients must AUTH with. " + _default("none"))
    ] = None,
    requirepass_file: Annotated[
        Path | None,
        typer.Option(help="A file whose first line is the password (kept out of ps)."),
    ] = None,
    max_clients: Annotated[
        int | None, typer.Option(help="Most clients at once (0: no limit). " + _default("10000"))
    ] = None,
    idle_timeout: Annotated[
        int | None,
        typer.Option(help="Close clients idle this many seconds (0: never). " + _default("0")),
    ] = None,
    node_id: Annotated[
        str | None, typer.Option(help="Cluster mode: this node's id (e.g. n1).")
    ] = None,
    raft_port: Annotated[
        int | None, typer.Option(help="Cluster mode: the Raft port (on --raft-bind).")
    ] = None,
    raft_bind: Annotated[
        str | None,
        typer.Option(
            help="Cluster mode: the address the Raft port listens on and peers reach this node at. "
            + _default("the --bind address"),
        ),
    ] = None,
    peers: Annotated[
        str | None, typer.Option(help="Cluster mode: the other members, n2=host:port,n3=...")
    ] = None,
    cluster_secret_file: Annotated[
        Path | None,
        typer.Option(help="Cluster mode: a file holding the secret that encrypts Raft traffic."),
    ] = None,
    insecure_cluster: Annotated[
        bool | None,
        typer.Option(
            "--insecure-cluster",
            help="Cluster mode without a secret: Raft traffic unencrypted and unauthenticated.",
        ),
    ] = None,
    max_clock_skew_ms: Annotated[
        int | None,
        typer.Option(
            help="Eventual tables: refuse a replica's write stamped this many ms ahead of this "
            "node's clock. " + _default("60000")
        ),
    ] = None,
    allow_clock_offset: Annotated[
        bool | None,
        typer.Option(
            "--allow-clock-offset",
            help="Tests only: let AMBER.LWW CLOCK-OFFSET skew this node's eventual clock.",
        ),
    ] = None,
    cluster_mode: Annotated[
        str | None,
        typer.Option(
            help="Cluster mode: raft (any keys to any member) | redis (also the Redis Cluster "
            "protocol: CLUSTER SLOTS/NODES/..., CROSSSLOT errors). " + _default("raft"),
        ),
    ] = None,
    cluster_resp_peers: Annotated[
        str | None,
        typer.Option(
            help="Cluster mode: the other members' RESP addresses, n2=host:port,... "
            "(eventual tables replicate over them; --cluster-mode redis shows them to clients)"
        ),
    ] = None,
    shard_map: Annotated[
        Path | None,
        typer.Option(
            help="--cluster-mode redis: a static shard map (JSON, or .toml): groups, their "
            "members' RESP host:port, slot ranges, epoch. " + _default("one group owns all slots")
        ),
    ] = None,
    backup_dir: Annotated[
        str | None,
        typer.Option(
            help="Folder AMBER.BACKUP writes into; clients name files inside it. "
            + _default("DATA/backups"),
        ),
    ] = None,
    backup_s3: Annotated[
        str | None,
        typer.Option(
            help="s3://bucket/prefix/ under which AMBER.BACKUP may write. " + _default("off")
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A TOML file with any of these settings.")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug | info | warning | error. " + _default("info"))
    ] = None,
) -> None:
    """Serve a data folder over the Redis protocol, HTTP/JSON and the KV text protocol.

    Every setting also comes from the TOML file (--config) and from AMBER_*
    environment variables (AMBER_PORT, AMBER_REQUIREPASS, ...); flags win,
    then the environment, then the file. Prints one "listening <frontend>
    <host>:<port>" line per front end, then "ready".

    With --tls-port and --http-tls-port, RESP and HTTP are also (or, with
    --port -1 / --http-port -1, only) served over TLS, configured as Redis 6
    is: --tls-cert-file, --tls-key-file, --tls-ca-cert-file,
    --tls-auth-clients. A password still applies over TLS.

    With --node-id, --raft-port and --peers the node joins a Raft cluster:
    writes go through the leader and are acknowledged once a majority holds
    them durably; reads are linearizable unless a client asks for stale ones.
    """
    # Imported here so that `amber --help` stays fast.
    from amber.server.server import PortInUse, run  # noqa: PLC0415
    from amber.server.settings import load_settings  # noqa: PLC0415

    flags = {
        "data": data,
        "port": port,
        "http_port": http_port,
        "kvtext_port": kvtext_port,
        "tls_port": tls_port,
        "http_tls_port": http_tls_port,
        "tls_cert_file": None if tls_cert_file is None else str(tls_cert_file),
        "tls_key_file": None if tls_key_file is None else str(tls_key_file),
        "tls_ca_cert_file": None if tls_ca_cert_file is None else str(tls_ca_cert_file),
        "tls_auth_clients": tls_auth_clients,
        "bind": bind,
        "durability": durability,
        "requirepass": requirepass,
        "requirepass_file": None if requirepass_file is None else str(requirepass_file),
        "max_clients": max_clients,
        "idle_timeout": idle_timeout,
        "log_level": log_level,
        "node_id": node_id,
        "raft_port": raft_port,
        "raft_bind": raft_bind,
        "peers": peers,
        "cluster_secret_file": None if cluster_secret_file is None else str(cluster_secret_file),
        "insecure_cluster": insecure_cluster,
        "max_clock_skew_ms": max_clock_skew_ms,
        "allow_clock_offset": allow_clock_offset,
        "cluster_mode": cluster_mode,
        "cluster_resp_peers": cluster_resp_peers,
        "shard_map": None if shard_map is None else str(shard_map),
        "backup_dir": backup_dir,
        "backup_s3": backup_s3,
    }
    try:
        settings = load_settings(flags, config_file=config)
        code = run(settings)
    except AmberError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    except PortInUse as exc:
        fail(exc.strerror or str(exc))
    except OSError as exc:
        fail(f"cannot listen: {exc}")
    raise typer.Exit(code)
