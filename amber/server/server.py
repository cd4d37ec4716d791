"""``amber serve``: one process, one database, three front ends on one event loop.

Start-up opens the database, builds the shared :class:`ServerContext` and
command state, and starts — each on its own port, 0 meaning "pick a free
one", -1 "off" —

- RESP (Redis protocol) — :mod:`amber.server.resp`;
- HTTP/JSON — ``amber.server.http.create_app(ctx)`` served by uvicorn on this
  same loop;
- the KV text protocol — ``amber.server.kvtext.start_kvtext(ctx, host, port)``;
- with ``tls_port`` / ``http_tls_port`` (off by default), RESP and HTTP over
  TLS on ports of their own (:mod:`amber.server.tls`), as the same front
  ends with the same password.

Then it prints one line per listener and a last ``ready`` line on stdout::

    listening resp 127.0.0.1:7379
    listening tls 127.0.0.1:7389
    listening http 127.0.0.1:7380
    listening https 127.0.0.1:7390
    listening kvtext 127.0.0.1:4040
    ready

so scripts and tests can read the ports. Writes from every connection go
through the database's group commit; a reply leaves only once the write is
as durable as the mode promises.

SIGTERM or SIGINT: stop accepting, let requests in flight finish (up to
``shutdown_timeout``) and snapshots being written (SAVE, BGSAVE) end, flush,
close the database, exit 0. A second signal exits at once with status 128 +
the signal's number, as a process killed by it (143 for SIGTERM, 130 for
SIGINT); with durability ``always`` every acknowledged write is durable then.

Background jobs of the server run under a :class:`~amber.node.supervisor.Supervisor`
(a crash is logged, restarted with backoff, shown in ``/health`` and
``INFO amber``): ``keyspace-notifier`` (the database's watch stream turned
into keyspace notifications) and ``metrics`` (request counts folded into
Prometheus once a second).

Test hook, not a feature: with ``AMBER_TEST_VOLATILE_FILES=1`` in its
environment a single (non-cluster) server on a data folder opens the log
backend on :class:`~amber.persistence.volatile.VolatileFiles`, which keeps
un-synced bytes in process memory, so a SIGKILL loses them as a power cut
would. ``amber chaos --nemesis crash`` uses it; never set it for real data.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import gc
import logging
import os
import resource
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .. import database
from ..errors import Compacted, InvalidArgument
from ..node.supervisor import Supervisor
from ..persistence.volatile import ENV as VOLATILE_FILES_ENV
from ..persistence.volatile import VolatileFiles
from ..replication.config import parse_peers
from .commands import RuntimeConfig, ServerState
from .commands.admin import snapshots_of
from .commands.cluster import RedisClusterView
from .commands.state import config_set_error
from .context import ServerContext
from .lww_sync import LwwSync
from .resp import RespLimits, RespServer
from .settings import ServeSettings, exposed_without_password
from .shard_watch import ShardWatches
from .tls import server_context

__all__ = [
    "RESERVED_FDS",
    "KeyspaceNotifier",
    "check_max_clients",
    "client_budget",
    "run",
    "serve",
]

log = logging.getLogger("amber.server")

#: Allocations between young garbage collections in a server process (see ``run``).
GC_YOUNG_THRESHOLD = 10_000


class KeyspaceNotifier:
    """The ``keyspace-notifier`` job: database watch → keyspace notifications.

    Runs on a supervisor thread only while notifications are enabled and
    someone subscribes; each committed revision is handed to the event loop
    in one call. After a crash it resumes from the next revision it owes.
    """

    def __init__(self, state: ServerState, loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.loop = loop
        self.next_revision: int | None = None
        self.stopping = False
        self._watch: Any = None
        self._lock = threading.Lock()

    def run(self) -> None:
        hub = self.state.pubsub
        if not hub.keyspace_wanted():
            self.next_revision = None
            return
        db = self.state.db
        start = self.next_revision or hub.keyspace_from
        try:
            watch = db.watch(start_revision=start, prev_value=False, progress_interval=0.2)
        except Compacted:
            watch = db.watch(prev_value=False, progress_interval=0.2)
        with self._lock:
            if self.stopping:
                watch.close()
                return
            self._watch = watch
        hub.notifier_active = True
        try:
            with watch:
                for batch in watch.batches():
                    if batch.events:
                        self.loop.call_soon_threadsafe(hub.publish_events, batch.events)
                    self.next_revision = batch.revision + 1
                    if self.stopping or not hub.keyspace_wanted():
                        self.next_revision = None
                        return
        finally:
            hub.notifier_active = False
            with self._lock:
                self._watch = None

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            if self._watch is not None:
                self._watch.close()


class _Listeners:
    """What was started, for the shutdown."""

    def __init__(self) -> None:
        #: RESP servers: plain, TLS or both.
        self.resp: list[RespServer] = []
        #: uvicorn servers (plain HTTP, HTTPS or both) sharing one app ...
        self.http: list[Any] = []
        #: ... the FastAPI app, so shutdown can end its open watch streams.
        self.http_app: Any = None
        self.http_tasks: list[asyncio.Task[Any]] = []
        self.kvtext: asyncio.Server | None = None
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}


#: File descriptors kept for the server's own use beyond ``maxclients``: the
#: listeners, the log and snapshot files, backups, Raft peers (Redis keeps 32;
#: Amber opens more files at once while it writes a snapshot).
RESERVED_FDS = 256


def client_budget(max_clients: int, soft: int, hard: int) -> tuple[int, int]:
    """The open-file limit to ask for and the ``maxclients`` it leaves room for.

    As Redis does: the soft limit is raised toward ``max_clients`` +
    ``RESERVED_FDS`` (at most to the hard limit), and ``maxclients`` lowered
    to what fits. Without that, clients could take every descriptor, and a
    server that cannot open its files stops writes. ``max_clients`` 0 (no
    limit) takes all the hard limit allows.
    """
    infinite = resource.RLIM_INFINITY
    room = 1 << 20 if hard == infinite else hard
    wanted = max_clients + RESERVED_FDS if max_clients else room
    target = max(soft, min(wanted, room)) if soft != infinite else soft
    allowed = (room if target == infinite else target) - RESERVED_FDS
    clients = max(1, min(max_clients or allowed, allowed))
    return target, clients


def _fit_fd_limit(max_clients: int) -> tuple[int, int]:
    """Apply :func:`client_budget`: (the open-file limit now, the ``maxclients`` it allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target, clients = client_budget(max_clients, soft, hard)
    if target != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            target, clients = client_budget(max_clients, soft, soft)
    return target, clients


def check_max_clients(value: str) -> str:
    """``CONFIG SET maxclients``: as at start, within what the open-file limit allows.

    Redis' rule and words: 0 is refused (no limit would let clients take
    every descriptor), and a number the limit cannot hold — after raising it
    as far as the hard limit lets — is refused with the largest that fits.
    """
    try:
        requested = int(value)
    except ValueError:
        raise config_set_error(
            "maxclients", "argument couldn't be parsed into an integer"
        ) from None
    if not 1 <= requested <= 2**32 - 1:
        raise config_set_error("maxclients", "argument must be between 1 and 4294967295 inclusive")
    _, clients = _fit_fd_limit(requested)
    if clients < requested:
        raise config_set_error(
            "maxclients",
            "The operating system is not able to handle the specified number of clients, "
            f"try with {clients}",
        )
    return str(requested)


def _raise_fd_limit(max_clients: int) -> int:
    """At start: the ``maxclients`` to run with (:func:`_fit_fd_limit`; warned when lowered)."""
    target, clients = _fit_fd_limit(max_clients)
    if max_clients and clients < max_clients:
        log.warning(
            "maxclients lowered from %d to %d: the open-file limit is %d and %d descriptors "
            "are kept for the server's files (raise it with ulimit -n)",
            max_clients,
            clients,
            target,
            RESERVED_FDS,
        )
    return clients


class PortInUse(OSError):
    """A port the server should listen on is taken; the message names the flag to change."""


def check_ports(settings: ServeSettings) -> None:
    """Raise :class:`PortInUse` for the first port already taken.

    Run before the database opens: recovery can take long, and a server that
    recovers and then dies with "address already in use" wastes it and hides
    which port and which flag are at fault.
    """
    wanted = [
        ("--port", "RESP", settings.bind, settings.port),
        ("--tls-port", "RESP over TLS", settings.bind, settings.tls_port),
        ("--http-port", "HTTP", settings.bind, settings.http_port),
        ("--http-tls-port", "HTTPS", settings.bind, settings.http_tls_port),
        ("--kvtext-port", "KV text", settings.bind, settings.kvtext_port),
    ]
    if settings.clustered:
        wanted.append(
            ("--raft-port", "Raft", settings.raft_bind or settings.bind, settings.raft_port)
        )
    for flag, what, host, port in wanted:
        if port <= 0:
            continue  # 0: any free port; -1: off
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise PortInUse(
                    exc.errno,
                    f"port {port} ({what}) is already in use on {host or '*'}: "
                    f"stop what listens there, or pick another port with {flag} "
                    "(0: any free port, -1: off)",
                ) from None


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: plain asyncio sets TCP_NODELAY on accepted
    # sockets only then (without it every HTTP reply waited ~40 ms for Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


async def _start_resp(  # noqa: PLR0917
    state: ServerState,
    settings: ServeSettings,
    listeners: _Listeners,
    name: str,
    port: int,
    tls: ssl.SSLContext | None,
) -> None:
    resp = RespServer(
        state,
        RespLimits(
            max_request_bytes=settings.max_request_bytes, max_pipeline=settings.max_pipeline
        ),
    )
    await resp.start(
        settings.bind, port, ssl=tls, ssl_handshake_timeout=settings.tls_handshake_timeout
    )
    listeners.resp.append(resp)
    listeners.ports[name] = resp.port
    state.config.values["port" if tls is None else "tls-port"] = str(resp.port)
    listeners.lines.append(f"listening {name} {settings.bind}:{resp.port}")


async def _start_http(  # noqa: PLR0917
    ctx: ServerContext,
    settings: ServeSettings,
    listeners: _Listeners,
    state: ServerState,
    port: int,
    tls: ssl.SSLContext | None,
) -> None:
    """One uvicorn server on ``port`` (HTTPS with ``tls``); a second shares the first's app."""
    try:
        import uvicorn  # noqa: PLC0415  (optional front end)

        from .http import create_app  # noqa: PLC0415
        from .http.timeouts import protocol_with_timeouts  # noqa: PLC0415
    except ImportError as exc:
        print(
            f"error: the HTTP front end is not available ({exc}); serving without it "
            "(set http_port = -1 to silence this)",
            file=sys.stderr,
            flush=True,
        )
        return

    class _EmbeddedServer(uvicorn.Server):
        """uvicorn on our loop: the process, not uvicorn, handles signals."""

        def install_signal_handlers(self) -> None:
            pass

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            """uvicorn's, but an HTTPS listener is ours, to bound its handshakes.

            uvicorn leaves a TLS handshake asyncio's 60 s: a client that opens
            and sends nothing held a connection that long, uncounted by
            ``maxclients`` (only a finished handshake reaches the protocol).
            """
            if tls is None or not sockets:
                await super().startup(sockets=sockets)
                return
            await super().startup(sockets=[])
            config = self.config
            create_protocol = functools.partial(
                config.http_protocol_class,  # built as uvicorn builds it
                config=config,  # type: ignore[call-arg]
                server_state=self.server_state,
                app_state=self.lifespan.state,
            )
            loop = asyncio.get_running_loop()
            for listening in sockets:
                self.servers.append(  # closed by uvicorn's shutdown
                    await loop.create_server(
                        create_protocol,
                        sock=listening,
                        ssl=tls,
                        ssl_handshake_timeout=settings.tls_handshake_timeout,
                        backlog=config.backlog,
                    )
                )

    sock = _bound_socket(settings.bind, port)
    if listeners.http_app is None:
        listeners.http_app = create_app(ctx, password=lambda: state.password or "")
    config = uvicorn.Config(
        listeners.http_app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        http=protocol_with_timeouts(
            settings.http_header_timeout, settings.http_body_timeout, full=state.clients_full
        ),
        # uvicorn's public hook for a context of our own (TLS 1.2+, client certs).
        ssl_context_factory=None if tls is None else (lambda _config, _default: tls),
    )
    server = _EmbeddedServer(config)
    listeners.http.append(server)
    # uvicorn keeps its open connections (keep-alive ones too) in one set per server.
    open_sets = [s.server_state.connections for s in listeners.http]
    ctx.metrics.count_connections("http", lambda: sum(len(c) for c in open_sets))
    state.other_clients.append(lambda: len(server.server_state.connections))
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    listeners.http_tasks.append(task)
    for _ in range(500):
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()  # raises what went wrong
    name = "http" if tls is None else "https"
    bound = sock.getsockname()[1]
    listeners.ports[name] = bound
    listeners.lines.append(f"listening {name} {settings.bind}:{bound}")


async def _start_kvtext(
    ctx: ServerContext, settings: ServeSettings, listeners: _Listeners, state: ServerState
) -> None:
    try:
        from .kvtext import start_kvtext  # noqa: PLC0415  (optional front end)
    except ImportError as exc:
        print(
            f"error: the kvtext front end is not available ({exc}); serving without it "
            "(set kvtext_port = -1 to silence this)",
            file=sys.stderr,
            flush=True,
        )
        return
    server = await start_kvtext(
        ctx,
        settings.bind,
        settings.kvtext_port,
        locked=lambda: bool(state.password),
        full=state.clients_full,
        counters=state.other_clients,
    )
    listeners.kvtext = server
    port = server.sockets[0].getsockname()[1]
    listeners.ports["kvtext"] = port
    listeners.lines.append(f"listening kvtext {settings.bind}:{port}")


def _open_database(settings: ServeSettings) -> database.Database:
    """The data folder alone, or as a member of a Raft cluster."""
    if os.environ.get(VOLATILE_FILES_ENV, "") not in ("", "0"):
        if settings.clustered or "://" in settings.data:
            raise InvalidArgument(
                f"{VOLATILE_FILES_ENV} (a test hook) needs a single server on a data folder"
            )
        log.warning("%s: un-synced writes are lost on any crash (test hook)", VOLATILE_FILES_ENV)
        return database.open(
            settings.data, config=settings.database_config(), files=VolatileFiles()
        )
    if settings.clustered:
        return database.open_cluster(
            settings.data, settings.cluster_config(), config=settings.database_config()
        )
    return database.open(settings.data, config=settings.database_config())


async def serve(
    settings: ServeSettings,
    *,
    announce: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Run the server until ``stop`` is set or SIGTERM/SIGINT; returns the exit code."""
    loop = asyncio.get_running_loop()
    say = announce or (lambda line: print(line, flush=True))
    # Certificates and keys are checked before recovery, which can take long.
    tls = server_context(settings)
    check_ports(settings)
    db = await loop.run_in_executor(None, lambda: _open_database(settings))
    for note in db.recovery_notes:
        log.warning("recovery: %s", note)
    # What recovery built lives as long as the process: keep the collector off it.
    gc.collect()
    gc.freeze()
    if exposed_without_password(settings):
        log.warning(
            "listening on %s with no password: anyone who can reach this host can read and "
            "write every key (set --requirepass-file, or --bind 127.0.0.1)",
            settings.bind or "every address",
        )
    ctx = ServerContext.for_database(db)
    ctx.backups = settings.backup_policy()
    redis_config = settings.redis_config()
    redis_config["maxclients"] = str(_raise_fd_limit(settings.max_clients))
    state = ServerState(ctx, RuntimeConfig(redis_config))
    state.config.setters["maxclients"] = check_max_clients
    if settings.cluster_mode == "redis":
        state.redis_cluster = RedisClusterView(
            db,
            settings.bind,
            parse_peers(settings.cluster_resp_peers),
            state.config,
            shard_map=settings.load_shard_map(),
            node_id=settings.node_id,
            http=f"{settings.bind}:{settings.http_port}" if settings.http_port > 0 else "",
        )
        ctx.shards = state.redis_cluster
        ctx.shard_watches = ShardWatches(db, state.redis_cluster, lambda: state.password)
    state.allow_clock_offset = settings.allow_clock_offset
    if settings.node_id:
        peers = parse_peers(settings.cluster_resp_peers)
        if state.redis_cluster is not None:  # a sharded group's own members, from its map
            peers = {**state.redis_cluster.resp_peers, **peers}
        state.lww_sync = LwwSync(db, settings.node_id, peers, lambda: state.password)
        ctx.metrics.registry.register(state.lww_sync.collector())
    snapshots_of(state)  # counts changes since the start for INFO persistence
    ctx.metrics.registry.register(state.stats.collector())
    jobs = Supervisor()
    notifier = KeyspaceNotifier(state, loop)
    jobs.every("keyspace-notifier", 0.05, notifier.run)
    jobs.every("metrics", 1.0, lambda: state.stats.flush(ctx))
    ctx.health_sources["server_jobs"] = lambda: {"ok": jobs.healthy, "jobs": jobs.health()}
    listeners = _Listeners()
    state.info_sources.append(
        lambda: {
            "server_jobs": jobs.health(),
            **{f"{k}_port": v for k, v in listeners.ports.items()},
        }
    )
    stop = stop or asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            # At once: no waiting for requests, no flush. With durability
            # "always" every acknowledged write is on disk already.
            print("second signal: exiting now", file=sys.stderr, flush=True)
            os._exit(128 + signum)
        log.info("%s: shutting down", signal.Signals(signum).name)
        stop.set()

    installed: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for wanted in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(wanted, on_signal, int(wanted))
                installed.append(int(wanted))
    try:
        if settings.port >= 0:
            await _start_resp(state, settings, listeners, "resp", settings.port, None)
        if settings.tls_port >= 0 and tls is not None:
            await _start_resp(state, settings, listeners, "tls", settings.tls_port, tls)
        if settings.http_port >= 0:
            await _start_http(ctx, settings, listeners, state, settings.http_port, None)
        if settings.http_tls_port >= 0 and tls is not None:
            await _start_http(ctx, settings, listeners, state, settings.http_tls_port, tls)
        if settings.kvtext_port >= 0 and ctx.shards is not None:
            # Slots can move to other groups online; the KV text protocol has no redirect.
            log.warning("the KV text protocol does not route keys to shards: it stays off")
        elif settings.kvtext_port >= 0:
            await _start_kvtext(ctx, settings, listeners, state)
        if state.lww_sync is not None:
            state.lww_sync.start()
        for line in listeners.lines:
            say(line)
        say("ready")
        await stop.wait()
    finally:
        await _shutdown(settings, listeners, notifier, jobs, state, ctx)
        for number in installed:
            loop.remove_signal_handler(number)
    say("stopped")
    return 0


async def _shutdown(  # noqa: PLR0917
    settings: ServeSettings,
    listeners: _Listeners,
    notifier: KeyspaceNotifier,
    jobs: Supervisor,
    state: ServerState,
    ctx: ServerContext,
) -> None:
    loop = asyncio.get_running_loop()
    if listeners.kvtext is not None:
        listeners.kvtext.close()
    if listeners.http:
        # An open SSE watch would hold uvicorn's graceful shutdown for its
        # whole timeout: end the streams (clients resume with Last-Event-ID).
        from .http import close_streams  # noqa: PLC0415  (optional front end)

        close_streams(listeners.http_app)
        for http in listeners.http:
            http.should_exit = True
    if listeners.resp:
        await asyncio.gather(*(resp.shutdown(settings.shutdown_timeout) for resp in listeners.resp))
    for task in listeners.http_tasks:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(task, settings.shutdown_timeout + 1)
    if listeners.kvtext is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listeners.kvtext.wait_closed(), 1.0)
    if state.lww_sync is not None:
        await state.lww_sync.stop()
    # A snapshot's worker thread cannot be cancelled: let it finish before closing.
    await snapshots_of(state).wait_idle()
    notifier.stop()
    await loop.run_in_executor(None, jobs.stop)
    state.stats.flush(ctx)
    await loop.run_in_executor(None, ctx.db.close)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop  # noqa: PLC0415  (used when installed)
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(settings: ServeSettings) -> int:
    """Run ``serve`` on uvloop when installed; the process's exit code."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # While fsyncs are quick the event loop commits its turn's writes itself; the
    # WAL flusher thread leads only when they are slow, and always in a cluster
    # (where the Raft thread commits too). Those threads share the GIL with the
    # loop: after an fsync one waits for the busy loop to let go of it, up to the
    # switch interval (5 ms by default), before it can apply and acknowledge.
    sys.setswitchinterval(0.0005)
    # Each command allocates a dozen short-lived containers; at CPython's
    # default (a young collection every 700 allocations) the collector took
    # ~15% of a SET's CPU (bench/resp_path.py). Young collections stay cheap
    # at 10,000; the recovered store is frozen out of them in ``serve``.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(serve(settings))
