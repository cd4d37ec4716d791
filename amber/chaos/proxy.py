"""Network partitions for a loopback cluster: one TCP proxy per Raft link.

PySyncObj keeps exactly one TCP connection per pair of nodes. The node whose
own address string compares greater (``"127.0.0.1:30012" >
"127.0.0.1:30002"``, a *string* comparison) dials; it then sends its own
address, and the receiver keeps the connection only if it knows the dialler
by that address. So a link can be routed through a proxy without either
side noticing: the dialler is told the proxy's address for the receiver
(``--peers``), the receiver is told the dialler's real address. For the
dialler to stay the dialler, every proxy address must compare *lower* than
every real raft address: :class:`ProxyNetwork` takes proxy ports from
``20000-29999`` and the harness puts raft ports in ``30000-32759`` (same
number of digits, below Linux's ephemeral range).

:class:`LinkProxy` forwards bytes both ways; :meth:`~LinkProxy.cut` closes
its connections and closes every new one at once (the dialler sees a
dropped link and keeps retrying); :meth:`~LinkProxy.heal` forwards again.
:meth:`ProxyNetwork.peer_address` is the hook
:class:`~amber.replication.local.LocalCluster` takes.

Eventual tables replicate over RESP: each member dials each peer's RESP
port and pulls (:mod:`amber.server.lww_sync`). :meth:`ProxyNetwork.resp_address`
(LocalCluster's ``resp_peer_address`` hook) gives every member a proxy
per peer for those links, one per direction (both sides dial), and
:meth:`~ProxyNetwork.cut`, :meth:`~ProxyNetwork.partition` and
:meth:`~ProxyNetwork.heal` act on them with the Raft link of the same
pair, so a partition cuts replication of both kinds. Clients keep the
real RESP ports.

Limitation: the addresses a node knows its peers by differ from node to
node, so cluster state that carries addresses between nodes must not be
relied on: a removal must name a member that every node knows by its real
address (the one with the greatest address, see the membership nemesis),
and a Raft snapshot installed from another node (PySyncObj sends one only
when a follower is behind the leader's compacted log: after 20,000 entries
or 300 s) would hand over the sender's view of the addresses.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading
from collections.abc import Iterable

from ..replication.local import LocalNode

__all__ = ["PROXY_PORTS", "LinkProxy", "ProxyNetwork"]

#: Proxy ports: five digits, all below the raft ports the harness uses.
PROXY_PORTS = range(20_000, 30_000)
_CHUNK = 65536


class LinkProxy:
    """Forwards every connection made to ``port`` to ``target``; thread-based.

    ``cut``/``heal``/``close`` are thread-safe and idempotent.
    """

    def __init__(self, name: str, target: tuple[str, int], port: int, host: str = "127.0.0.1"):
        self.name = name
        self.target = target
        self.host = host
        self.port = port
        self.connections = 0
        self._open = True
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind((host, port))
            self._listener.listen(16)
        except OSError:
            self._listener.close()
            raise
        self._thread = threading.Thread(target=self._accept, name=f"proxy-{name}", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_cut(self) -> bool:
        return not self._open

    def cut(self) -> None:
        """Drop the link: close its connections and refuse new ones until ``heal``."""
        with self._lock:
            self._open = False
            doomed = list(self._sockets)
            self._sockets.clear()
        for sock in doomed:
            _close(sock)

    def heal(self) -> None:
        """Forward new connections again (the dialler reconnects on its own)."""
        with self._lock:
            self._open = True

    def close(self) -> None:
        """Stop listening and drop every connection."""
        with self._lock:
            self._closed = True
        self.cut()
        _close(self._listener)
        self._thread.join(5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    _close(client)
                    return
                forwarding = self._open
            if not forwarding:
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=2)
                upstream.settimeout(None)
                # Forward each small message at once: with Nagle's algorithm on both hops
                # a request/reply link waits for delayed ACKs (~40 ms a message).
                for sock in (client, upstream):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if not self._open:
                    _close(client)
                    _close(upstream)
                    continue
                self._sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(src, dst), name=f"proxy-{self.name}", daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(_CHUNK)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            self._sockets.discard(src)
            self._sockets.discard(dst)
        _close(src)
        _close(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class ProxyNetwork:
    """The proxies of one cluster, created on demand, one per pair of nodes."""

    def __init__(self, host: str = "127.0.0.1", *, seed: int | None = None) -> None:
        self.host = host
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        #: ``frozenset({id_a, id_b})`` -> the proxy of that link.
        self.links: dict[frozenset[str], LinkProxy] = {}
        #: ``(from_id, to_id)`` -> the proxy ``from_id`` dials ``to_id``'s RESP port through.
        self.resp_links: dict[tuple[str, str], LinkProxy] = {}

    def peer_address(self, from_node: LocalNode, to_node: LocalNode) -> str:
        """The address ``from_node`` should know ``to_node`` by (``LocalCluster``'s hook)."""
        if from_node.raft_address <= to_node.raft_address:
            return to_node.raft_address  # to_node dials: from_node must know its real address
        link = frozenset((from_node.node_id, to_node.node_id))
        with self._lock:
            proxy = self.links.get(link)
            if proxy is None or proxy.target != (to_node.host, to_node.raft_port):
                if proxy is not None:
                    proxy.close()
                proxy = self._new_proxy(f"{from_node.node_id}->{to_node.node_id}", to_node)
                self.links[link] = proxy
        if not proxy.address < from_node.raft_address:
            raise ValueError(
                f"proxy address {proxy.address} must compare below {from_node.raft_address}: "
                "use raft ports in 30000-39999"
            )
        return proxy.address

    def resp_address(self, from_node: LocalNode, to_node: LocalNode) -> str:
        """The RESP address ``from_node`` pulls ``to_node``'s eventual changes from: a proxy
        (``LocalCluster``'s ``resp_peer_address`` hook)."""
        link = (from_node.node_id, to_node.node_id)
        target = (to_node.host, to_node.resp_port)
        with self._lock:
            proxy = self.resp_links.get(link)
            if proxy is None or proxy.target != target:
                if proxy is not None:
                    proxy.close()
                name = f"{from_node.node_id}->{to_node.node_id}/resp"
                proxy = self.resp_links[link] = self._new_proxy(name, to_node, target)
        return proxy.address

    def _new_proxy(
        self, name: str, to_node: LocalNode, target: tuple[str, int] | None = None
    ) -> LinkProxy:
        for _ in range(200):
            port = self._rng.choice(PROXY_PORTS)
            try:
                return LinkProxy(name, target or (to_node.host, to_node.raft_port), port, self.host)
            except OSError:
                continue
        raise OSError("found no free proxy port in 200 attempts")

    def cut(self, a: str, b: str) -> None:
        """Cut the link between nodes ``a`` and ``b`` (both directions: it is one connection)."""
        proxy = self.links.get(frozenset((a, b)))
        if proxy is None:
            raise KeyError(f"no proxied link between {a} and {b}")
        proxy.cut()
        for pair in ((a, b), (b, a)):
            if pair in self.resp_links:
                self.resp_links[pair].cut()

    def partition(self, groups: Iterable[Iterable[str]]) -> list[tuple[str, str]]:
        """Cut every link between nodes of different groups; returns the cut links."""
        owner = {node: i for i, group in enumerate(groups) for node in group}
        cut = []
        for link in sorted(self.links, key=sorted):
            a, b = sorted(link)
            if a in owner and b in owner and owner[a] != owner[b]:
                self.cut(a, b)
                cut.append((a, b))
        return cut

    def heal(self) -> None:
        """Forward every link again."""
        for proxy in [*self.links.values(), *self.resp_links.values()]:
            proxy.heal()

    def close(self) -> None:
        """Close every proxy (idempotent)."""
        with self._lock:
            proxies = [*self.links.values(), *self.resp_links.values()]
            self.links, self.resp_links = {}, {}
        for proxy in proxies:
            proxy.close()
