"""``amber serve`` settings: one typed object filled from defaults, TOML, env, flags.

Precedence, lowest first: the defaults below, the TOML file
(``--config amber.toml``, or ``AMBER_CONFIG``), ``AMBER_*`` environment
variables (``AMBER_PORT=7000``, ``AMBER_REQUIREPASS=…``), then command-line
flags. Every field can come from each source; names are the field names
(``http_port`` in TOML — ``http-port`` works too — ``AMBER_HTTP_PORT`` in
the environment, ``--http-port`` as a flag). A port of 0 picks a free port,
-1 turns that front end off.

Example ``amber.toml``::

    data = "/var/lib/amber"
    port = 7379
    http_port = 7380
    kvtext_port = -1          # off
    durability = "always"
    requirepass = "s3cret"
    max_clients = 10000
    idle_timeout = 300
    tls_port = 7389           # RESP over TLS (-1, the default: off)
    http_tls_port = 7390      # HTTPS (-1, the default: off)
    tls_cert_file = "/etc/amber/server.crt"
    tls_key_file = "/etc/amber/server.key"
    tls_ca_cert_file = "/etc/amber/ca.crt"
    tls_auth_clients = "yes"  # yes | optional | no, as Redis' tls-auth-clients
    history_bytes = 67108864  # watch history in memory (64 MiB; resumes reach back this far)
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints

from ..backup import BackupPolicy
from ..cluster.slots import SlotMap, load_shard_map
from ..config import DURABILITY_MODES, Config, Limits
from ..errors import InvalidArgument
from ..replication.config import ClusterConfig, parse_peers
from .tls import check_settings as check_tls_settings

__all__ = ["ServeSettings", "exposed_without_password", "load_settings"]

ENV_PREFIX = "AMBER_"


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Everything ``amber serve`` can be told."""

    #: The data folder (or a backend URL such as ``memory://``).
    data: str = "data"
    bind: str = "127.0.0.1"
    #: RESP (Redis protocol) port; 0 picks a free one, -1 turns it off.
    port: int = 7379
    http_port: int = 7380
    kvtext_port: int = 4040
    #: RESP over TLS (Redis' ``tls-port``); -1: off. Plain RESP stays on ``port``
    #: unless that is -1 too.
    tls_port: int = -1
    #: HTTPS (HTTP/JSON over TLS) on its own port; -1: off.
    http_tls_port: int = -1
    #: The server's certificate chain (PEM) for both TLS ports.
    tls_cert_file: str = ""
    #: Its private key (PEM, unencrypted).
    tls_key_file: str = ""
    #: The CA (PEM) that client certificates must be signed by.
    tls_ca_cert_file: str = ""
    #: Client certificates: ``yes`` required (Redis' default; needs the CA),
    #: ``optional`` verified if presented, ``no`` not asked for.
    tls_auth_clients: str = "yes"
    #: Seconds a client has to finish its TLS handshake (RESP and HTTPS), so a
    #: connection that opens and sends nothing does not hold a socket long.
    tls_handshake_timeout: float = 10.0
    durability: str = "always"
    #: ``interval`` mode: fsync every this many milliseconds.
    interval_ms: int = 100
    #: Clients must AUTH with this password (empty: no password).
    requirepass: str = ""
    #: A file holding the password (its first line), so that it is not shown by ``ps``.
    requirepass_file: str = ""
    #: Connections beyond this many are refused with an error (0: no limit).
    max_clients: int = 10_000
    #: The largest request a client may send, in bytes.
    max_request_bytes: int = 64 * 1024 * 1024 + 64 * 1024
    #: The largest value, in bytes once encoded.
    max_value_bytes: int = 16 * 1024 * 1024
    #: Commands run per read before other clients get a turn; replies waiting at most.
    max_pipeline: int = 1024
    #: Close a client idle this many seconds (0: never; pub/sub clients never).
    idle_timeout: int = 0
    #: Events a watch (AMBER.WATCH, a watch channel, an HTTP stream) may hold for
    #: a client that does not keep up; past it the client is told it lagged.
    watch_queue: int = 10_000
    #: Redis' ``notify-keyspace-events`` flags (empty: off; ``KEA``: everything).
    notify_keyspace_events: str = ""
    #: HTTP: seconds from a request's first byte to the end of its headers (slowloris).
    http_header_timeout: float = 10.0
    #: HTTP: seconds of silence at most while a request's body arrives.
    http_body_timeout: float = 30.0
    #: Seconds to let in-flight requests finish on SIGTERM/SIGINT.
    shutdown_timeout: float = 10.0
    log_level: str = "info"
    #: Watch history kept in memory for watches that resume from a past
    #: revision: at most this many bytes of Python objects (the events' keys,
    #: values and bookkeeping) ...
    history_bytes: int = 64 * 1024 * 1024
    #: ... and at most this many revisions.
    history_revisions: int = 100_000
    #: Cluster mode (all four below, or none): this node's id, ...
    node_id: str = ""
    #: ... its Raft port on ``raft_bind`` ...
    raft_port: int = 0
    #: The address the Raft port listens on and peers reach it at (empty: ``bind``).
    raft_bind: str = ""
    #: ... the other members, ``n2=host:port,n3=host:port`` ...
    peers: str = ""
    #: ... and a file holding the secret that encrypts and authenticates Raft traffic.
    cluster_secret_file: str = ""
    #: Run a cluster without a secret (unencrypted, unauthenticated Raft traffic).
    insecure_cluster: bool = False
    #: Eventual tables: a replica's write stamped this far ahead of our clock is refused.
    max_clock_skew_ms: int = 60_000
    #: Fault-injection tests only: ``AMBER.LWW CLOCK-OFFSET`` may skew the eventual clock.
    allow_clock_offset: bool = False
    #: ``raft`` (the default): a Raft cluster, clients send any keys to any member.
    #: ``redis``: also speak the Redis Cluster protocol (CLUSTER SLOTS/NODES/...,
    #: CROSSSLOT for multi-key commands across slots); one group owns every slot.
    cluster_mode: str = "raft"
    #: The other members' RESP addresses, ``n2=host:port,...`` (Raft knows only
    #: raft addresses): eventual tables replicate over them, and in ``redis``
    #: mode CLUSTER SLOTS/NODES tell clients.
    cluster_resp_peers: str = ""
    #: ``redis`` mode: a static shard map file (JSON, or TOML by its suffix):
    #: groups, their members' RESP addresses and slot ranges, an epoch. Empty:
    #: this node's group owns every slot.
    shard_map: str = ""
    #: A cluster write or read that cannot finish within this many seconds fails.
    cluster_timeout: float = 10.0
    #: The folder ``AMBER.BACKUP <name>`` writes into (empty: DATA/backups for a
    #: data folder; with a backend URL, file backups are off unless set).
    backup_dir: str = ""
    #: ``s3://bucket/prefix/`` under which ``AMBER.BACKUP`` may write (empty: off).
    backup_s3: str = ""

    def load_shard_map(self) -> SlotMap | None:
        """The validated ``--shard-map``, or None; this node must be in exactly one group,
        and its ``--peers`` must be members of that group (each group is its own Raft group)."""
        if not self.shard_map:
            return None
        if self.cluster_mode != "redis":
            raise InvalidArgument("--shard-map needs --cluster-mode redis")
        try:
            slot_map = load_shard_map(self.shard_map)
        except OSError as exc:
            raise InvalidArgument(f"shard map {self.shard_map}: {exc}") from None
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        group = slot_map.group_of(self.node_id)
        if group is None:
            raise InvalidArgument(f"shard map: node {self.node_id!r} is in no group")
        mine = {m.node_id for m in slot_map.groups[group]}
        strangers = sorted(set(parse_peers(self.peers)) - mine) if self.peers else []
        if strangers:
            raise InvalidArgument(
                f"shard map: peers {', '.join(strangers)} are not in group {group!r} "
                f"of node {self.node_id!r}"
            )
        return slot_map

    def __post_init__(self) -> None:
        if self.durability not in DURABILITY_MODES:
            raise InvalidArgument(
                f"durability must be one of {', '.join(DURABILITY_MODES)}, not {self.durability!r}"
            )
        for name in ("port", "http_port", "kvtext_port", "tls_port", "http_tls_port"):
            port = getattr(self, name)
            if not -1 <= port <= 65535:
                raise InvalidArgument(f"{name} must be 0-65535 (0: any free port, -1: off)")
        for name in ("max_clients", "idle_timeout"):
            if getattr(self, name) < 0:
                raise InvalidArgument(f"{name} must be >= 0")
        for name in (
            "interval_ms",
            "max_request_bytes",
            "max_value_bytes",
            "max_pipeline",
            "watch_queue",
        ):
            if getattr(self, name) < 1:
                raise InvalidArgument(f"{name} must be >= 1")
        if (self.peers or self.raft_port or self.cluster_secret_file) and not self.node_id:
            raise InvalidArgument("--peers, --raft-port and --cluster-secret-file need --node-id")
        if self.cluster_mode not in ("raft", "redis"):
            raise InvalidArgument(f"cluster_mode must be raft or redis, not {self.cluster_mode!r}")
        if self.cluster_mode == "redis" and not self.node_id:
            raise InvalidArgument("--cluster-mode redis needs a cluster (--node-id)")
        if self.cluster_resp_peers:
            parse_peers(self.cluster_resp_peers)
        if self.shard_map:
            self.load_shard_map()
        if self.http_header_timeout <= 0 or self.http_body_timeout <= 0:
            raise InvalidArgument("http_header_timeout and http_body_timeout must be > 0")
        if self.tls_handshake_timeout <= 0:
            raise InvalidArgument("tls_handshake_timeout must be > 0")
        if self.backup_s3 and not self.backup_s3.startswith("s3://"):
            raise InvalidArgument("backup_s3 must be an s3://bucket/prefix/ URL")
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise InvalidArgument("log_level must be debug, info, warning or error")
        check_tls_settings(self)

    @property
    def clustered(self) -> bool:
        return bool(self.node_id)

    def cluster_config(self) -> ClusterConfig:
        """The Raft membership for these settings (cluster mode only)."""
        if not 0 < self.raft_port <= 65535:
            raise InvalidArgument("cluster mode needs --raft-port (1-65535)")
        secret = None
        if self.cluster_secret_file:
            try:
                secret = Path(self.cluster_secret_file).read_text().strip()
            except OSError as exc:
                raise InvalidArgument(
                    f"cannot read the cluster secret file {self.cluster_secret_file}: {exc}"
                ) from None
            if not secret:
                raise InvalidArgument(f"cluster secret file {self.cluster_secret_file} is empty")
        return ClusterConfig(
            node_id=self.node_id,
            raft_address=f"{self.raft_bind or self.bind}:{self.raft_port}",
            peers=parse_peers(self.peers),
            secret=secret,
            insecure=self.insecure_cluster,
            timeout_s=self.cluster_timeout,
        )

    def backup_policy(self) -> BackupPolicy:
        """Where clients may have backups written (``AMBER.BACKUP``)."""
        folder = self.backup_dir or (
            None if "://" in self.data else os.path.join(self.data, "backups")
        )
        return BackupPolicy(
            folder=None if folder is None else os.path.abspath(folder),
            s3_prefix=self.backup_s3 or None,
        )

    def database_config(self) -> Config:
        """The embedded database's configuration for these settings."""
        limits = Limits(
            max_value_bytes=self.max_value_bytes,
            max_batch_bytes=max(Limits().max_batch_bytes, self.max_value_bytes),
        )
        return Config(
            durability=self.durability,  # type: ignore[arg-type]
            interval_ms=self.interval_ms,
            limits=limits,
            history_bytes=self.history_bytes,
            history_revisions=self.history_revisions,
            watch_queue=self.watch_queue,
            max_clock_skew_ms=self.max_clock_skew_ms,
        )

    def redis_config(self) -> dict[str, str]:
        """What CONFIG GET shows, under Redis' names (redis-benchmark asks for some)."""
        return {
            "bind": self.bind,
            "port": str(self.port),
            "appendonly": "yes",
            "appendfsync": {"always": "always", "interval": "everysec", "never": "no"}[
                self.durability
            ],
            "save": "",
            "databases": "1",
            "maxclients": str(self.max_clients),
            "timeout": str(self.idle_timeout),
            "requirepass": self.requirepass,
            "notify-keyspace-events": self.notify_keyspace_events,
            "proto-max-bulk-len": str(self.max_request_bytes),
            "client-query-buffer-limit": str(self.max_request_bytes),
            "maxmemory": "0",
            "maxmemory-policy": "noeviction",
            "dir": str(Path(self.data).resolve()) if "://" not in self.data else self.data,
            "amber-durability": self.durability,
            "amber-http-port": str(self.http_port),
            "amber-kvtext-port": str(self.kvtext_port),
            "tls-port": str(self.tls_port),
            "tls-cert-file": self.tls_cert_file,
            "tls-key-file": self.tls_key_file,
            "tls-ca-cert-file": self.tls_ca_cert_file,
            "tls-auth-clients": self.tls_auth_clients,
            "amber-http-tls-port": str(self.http_tls_port),
        }


def _field_types() -> dict[str, Any]:
    hints = get_type_hints(ServeSettings)
    return {f.name: hints[f.name] for f in fields(ServeSettings)}


def _convert(name: str, value: Any, kind: Any, source: str) -> Any:
    """``value`` as the field's type, or a clear error naming the source."""
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"{source}: {name} must be {getattr(kind, '__name__', kind)}, not {value!r}"
        ) from None


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeSettings:
    """Defaults < TOML file < ``AMBER_*`` environment < ``flags`` (None values skipped)."""
    environ = os.environ if environ is None else environ
    types = _field_types()
    values: dict[str, Any] = {}
    path = config_file or environ.get(f"{ENV_PREFIX}CONFIG")
    if path:
        try:
            with open(path, "rb") as f:
                document = tomllib.load(f)
        except FileNotFoundError:
            raise InvalidArgument(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidArgument(f"config file {path}: {exc}") from None
        section = document.get("serve", document)
        for raw_name, value in section.items():
            name = raw_name.replace("-", "_")
            if name == "serve" and isinstance(value, dict):
                continue
            if name not in types:
                raise InvalidArgument(
                    f"config file {path}: unknown setting {raw_name!r} "
                    f"(known: {', '.join(sorted(types))})"
                )
            values[name] = _convert(name, value, types[name], f"config file {path}")
    for name, kind in types.items():
        env_name = f"{ENV_PREFIX}{name.upper()}"
        if env_name in environ:
            values[name] = _convert(name, environ[env_name], kind, f"environment {env_name}")
    for name, value in (flags or {}).items():
        if value is None:
            continue
        if name not in types:
            raise InvalidArgument(f"unknown setting {name!r}")
        values[name] = _convert(name, value, types[name], f"--{name.replace('_', '-')}")
    settings = dataclasses.replace(ServeSettings(), **values)
    if settings.requirepass_file:
        if settings.requirepass:
            raise InvalidArgument("give requirepass or requirepass_file, not both")
        try:
            lines = Path(settings.requirepass_file).read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgument(
                f"cannot read the password file {settings.requirepass_file}: {exc}"
            ) from None
        password = lines[0].strip() if lines else ""
        if not password:
            raise InvalidArgument(f"the password file {settings.requirepass_file} is empty")
        settings = dataclasses.replace(settings, requirepass=password)
    return settings


def exposed_without_password(settings: ServeSettings) -> bool:
    """True when the front ends listen beyond this host and need no password."""
    if settings.requirepass:
        return False
    try:
        return not ipaddress.ip_address(settings.bind).is_loopback
    except ValueError:
        return settings.bind != "localhost"  # a host name, or "" (every address)
