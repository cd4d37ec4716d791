"""Cluster settings, importable without loading PySyncObj."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InvalidArgument

__all__ = ["MIN_SECRET_BYTES", "ClusterConfig", "parse_address", "parse_peers"]

#: A shorter cluster secret is refused: the Raft port is reachable by anyone
#: who can reach the host, and the secret is all that keeps them out.
MIN_SECRET_BYTES = 16


def parse_address(text: str) -> str:
    """Check ``host:port`` and return it unchanged."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"a raft address is host:port, not {text!r}")
    return text


def parse_peers(text: str) -> dict[str, str]:
    """``n2=127.0.0.1:7391,n3=127.0.0.1:7392`` → ``{"n2": "127.0.0.1:7391", …}``."""
    peers: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, address = part.partition("=")
        if not sep or not name:
            raise InvalidArgument(f"a peer is id=host:port, not {part!r}")
        if name in peers:
            raise InvalidArgument(f"peer {name!r} is given twice")
        peers[name] = parse_address(address)
    return peers


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Who this node is and who its peers are; see ``amber serve --help``."""

    node_id: str
    #: ``host:port`` peers reach this node at (and, unless ``raft_bind``, it binds).
    raft_address: str
    #: The other members, node id → ``host:port``.
    peers: Mapping[str, str] = field(default_factory=dict)
    #: Encrypts and authenticates Raft traffic; required unless ``insecure``.
    secret: str | None = None
    insecure: bool = False
    #: A write or read that cannot finish within this many seconds fails.
    timeout_s: float = 10.0
    #: Snapshot and compact the journal after this many entries ...
    compaction_entries: int = 20_000
    #: ... or this many seconds.
    compaction_seconds: float = 300.0
    #: The host the Raft port listens on; empty: ``raft_address``'s host.
    raft_bind: str = ""

    def __post_init__(self) -> None:
        if not self.node_id or "=" in self.node_id or "," in self.node_id:
            raise InvalidArgument(f"node id {self.node_id!r} must be a name without '=' or ','")
        parse_address(self.raft_address)
        for name, address in self.peers.items():
            parse_address(address)
            if name == self.node_id:
                raise InvalidArgument(f"node {name!r} lists itself as a peer")
            if address == self.raft_address:
                raise InvalidArgument(f"peer {name!r} has this node's own address {address}")
        if not self.secret and not self.insecure:
            raise InvalidArgument(
                "a cluster needs a secret (--cluster-secret-file) to encrypt and authenticate "
                "Raft traffic; pass --insecure-cluster to run without one"
            )
        if self.secret and len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise InvalidArgument(
                f"the cluster secret is {len(self.secret.encode())} bytes; it must be at least "
                f"{MIN_SECRET_BYTES} (e.g. `python -c 'import secrets; "
                f"print(secrets.token_urlsafe(32))'`)"
            )
        if self.timeout_s <= 0:
            raise InvalidArgument("the cluster timeout must be positive")

    @property
    def bind_address(self) -> str:
        """``host:port`` the Raft port listens on."""
        port = self.raft_address.rpartition(":")[2]
        return f"{self.raft_bind}:{port}" if self.raft_bind else self.raft_address
