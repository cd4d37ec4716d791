"""Connection and server commands: PING HELLO AUTH CLIENT COMMAND CONFIG INFO …"""

from __future__ import annotations

import asyncio
import logging
import platform
import re
import resource
import secrets
import sys
import time
import weakref
from typing import Any

from ...backup import backup
from .registry import REGISTRY, CommandError, syntax_error
from .replies import Simple, Verbatim
from .session import error_reply
from .state import AMBER_VERSION, REDIS_VERSION
from .strings import parse_int

log = logging.getLogger(__name__)
command = REGISTRY.command
OK = Simple("OK")
_RUN_ID = secrets.token_hex(20)


@command("PING", -1, "fast pubsub", group="connection")
def ping(session: Any, kv: Any, args: list[bytes]) -> Any:
    """PONG, or the message given."""
    if len(args) > 2:
        raise CommandError("wrong number of arguments for 'ping' command")
    if session.protocol == 2 and session.subscriptions:
        return [b"pong", args[1] if len(args) > 1 else b""]
    return args[1] if len(args) > 1 else Simple("PONG")


@command("ECHO", 2, "fast", group="connection")
def echo(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The message given."""
    return args[1]


@command("QUIT", -1, "fast pubsub noauth nomulti", group="connection")
def quit_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Close the connection after this reply."""
    session.closing = True
    return OK


@command("SELECT", 2, "fast", group="connection")
def select(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Only database 0 exists (use tables instead)."""
    if parse_int(args[1], "value is not an integer or out of range") != 0:
        raise CommandError("DB index is out of range")
    return OK


@command("TIME", 1, "fast", group="server")
def time_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """The server's time: Unix seconds and microseconds."""
    now = time.time_ns() // 1000
    return [str(now // 1_000_000).encode(), str(now % 1_000_000).encode()]


def _check_password(session: Any, user: bytes | None, password: bytes) -> None:
    expected = session.state.password
    if user not in (None, b"default") or expected is None:
        if expected is None and user in (None, b"default"):
            raise CommandError(
                "AUTH <password> called without any password configured for the default user. "
                "Are you sure your configuration is correct?"
            )
        raise CommandError("invalid username-password pair or user is disabled.", "WRONGPASS")
    if not secrets.compare_digest(password, expected.encode()):
        raise CommandError("invalid username-password pair or user is disabled.", "WRONGPASS")
    session.authenticated = True


@command("AUTH", -2, "fast noauth", group="connection")
def auth(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``AUTH password`` or ``AUTH default password``."""
    if len(args) > 3:
        raise syntax_error()
    user = args[1] if len(args) == 3 else None
    _check_password(session, user, args[-1])
    return OK


#: redis-server 7.0's reply to HELLO without AUTH on a session that has not authenticated.
_HELLO_NOAUTH = (
    "HELLO must be called with the client already authenticated, otherwise the "
    "HELLO AUTH <user> <pass> option can be used to authenticate the client and "
    "select the RESP protocol version at the same time"
)


@command("HELLO", -1, "fast noauth", group="connection")
def hello(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``HELLO [2|3 [AUTH user pass] [SETNAME name]]``: pick RESP2/RESP3, say who we are."""
    protocol = session.protocol
    i = 1
    if len(args) > 1:
        try:
            protocol = int(args[1])
        except ValueError:
            raise CommandError("Protocol version is not an integer or out of range") from None
        if protocol not in (2, 3):
            raise CommandError("unsupported protocol version", "NOPROTO")
        i = 2
    name: bytes | None = None
    while i < len(args):
        option = args[i].upper()
        if option == b"AUTH" and i + 2 < len(args):
            _check_password(session, args[i + 1], args[i + 2])
            i += 3
        elif option == b"SETNAME" and i + 1 < len(args):
            name = args[i + 1]
            i += 2
        else:
            raise CommandError(
                f"Syntax error in HELLO option '{option.decode('utf-8', 'replace')}'"
            )
    if not session.authenticated:
        raise CommandError(_HELLO_NOAUTH, "NOAUTH")
    if name is not None:
        session.name = _client_name(name)
    session.protocol = protocol
    return {
        "server": "amber",
        "version": REDIS_VERSION,
        "amber_version": AMBER_VERSION,
        "proto": protocol,
        "id": session.id,
        "mode": "standalone",
        "role": "master",
        "modules": [],
    }


@command("RESET", 1, "fast pubsub noauth nomulti", group="connection")
def reset(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Back to a fresh connection's state (keeps the socket)."""
    session.multi = None
    session.multi_failed = False
    session.watched.clear()
    session.state.pubsub.drop_session(session)
    for task in session.watches.values():
        task.cancel()
    session.watches.clear()
    session.protocol = 2
    session.name = ""
    session.authenticated = session.state.password is None
    return Simple("RESET")


#: A byte a client name, library name or version may not hold (Redis: ``!``-``~`` only).
_NOT_NAME = re.compile(rb"[^!-~]")


def _client_name(raw: bytes) -> str:
    """``raw`` as a name; checked at C speed (a per-character loop held the
    server 3 s over a 32 MiB name)."""
    if _NOT_NAME.search(raw):
        raise CommandError("Client names cannot contain spaces, newlines or special characters.")
    return raw.decode("ascii")


def client_line(s: Any) -> str:
    now = time.monotonic()
    return (
        f"id={s.id} addr={s.peer} laddr={s.local} fd={s.fd} name={s.name} "
        f"age={int(now - s.created)} "
        f"idle={int(now - s.last_active)} flags={'P' if s.subscriptions else 'N'} db=0 "
        f"sub={len(s.channels)} psub={len(s.patterns)} ssub=0 "
        f"multi={-1 if s.multi is None else len(s.multi)} watch={len(s.watched)} "
        f"qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 "
        f"tot-mem=0 events=r cmd={s.last_command.lower() or 'NULL'} user=default redir=-1 "
        f"resp={s.protocol} lib-name={s.lib_name} lib-ver={s.lib_ver}"
    )


_CLIENT_TYPES = (b"NORMAL", b"MASTER", b"SLAVE", b"REPLICA", b"PUBSUB")


def _client_kill(session: Any, args: list[bytes]) -> Any:
    """CLIENT KILL ip:port (old form: ``OK``, may kill the caller) or by filters (a count).

    Filters as in Redis 7.0: ``ID``, ``TYPE``, ``USER``, ``ADDR``, ``LADDR``,
    ``SKIPME yes|no`` (default yes); every filter given must match.
    """
    sessions = list(session.state.sessions.values())
    if len(args) == 3:
        address = args[2].decode("utf-8", "replace")
        target = next((s for s in sessions if s.peer == address), None)
        if target is None:
            raise CommandError("No such client")
        _kill(session, target)
        return OK
    if len(args) % 2:
        raise CommandError("syntax error")
    wanted: dict[str, Any] = {}  # Session attribute -> value it must have
    pubsub: bool | None = None  # TYPE: subscribed or not
    replication = False  # TYPE MASTER/REPLICA: Amber has no such links over RESP
    skipme = True
    for word, raw in zip(args[2::2], args[3::2], strict=True):
        name = word.upper()
        text = raw.decode("utf-8", "replace")
        if name == b"ID":
            ident = int(raw) if raw.isdigit() else 0
            if ident <= 0:
                raise CommandError("client-id should be greater than 0")
            wanted["id"] = ident
        elif name == b"TYPE":
            kind = raw.upper()
            if kind not in _CLIENT_TYPES:
                raise CommandError(f"Unknown client type '{text}'")
            replication = kind not in (b"NORMAL", b"PUBSUB")
            pubsub = kind == b"PUBSUB"
        elif name == b"USER":
            if text != "default":
                raise CommandError(f"No such user '{text}'")
        elif name == b"ADDR":
            wanted["peer"] = text
        elif name == b"LADDR":
            wanted["local"] = text
        elif name == b"SKIPME":
            if raw.lower() not in (b"yes", b"no"):
                raise CommandError("syntax error")
            skipme = raw.lower() == b"yes"
        else:
            raise CommandError("syntax error")
    if replication:
        return 0
    killed = 0
    for target in sessions:
        if skipme and target is session:
            continue
        if pubsub is not None and bool(target.subscriptions) != pubsub:
            continue
        if all(getattr(target, attr) == value for attr, value in wanted.items()):
            _kill(session, target)
            killed += 1
    return killed


def _kill(session: Any, target: Any) -> None:
    """The caller itself gets its reply first, then is closed (as QUIT), as in Redis."""
    if target is session:
        session.closing = True
    else:
        target.kill()


@command("CLIENT", -2, "", group="connection")
def client(session: Any, kv: Any, args: list[bytes]) -> Any:
    """CLIENT ID | SETNAME | GETNAME | LIST | INFO | SETINFO | KILL ID n | NO-EVICT …"""
    sub = args[1].upper()
    if sub == b"ID" and len(args) == 2:
        return session.id
    if sub == b"SETNAME" and len(args) == 3:
        session.name = _client_name(args[2])
        return OK
    if sub == b"GETNAME" and len(args) == 2:
        return session.name.encode() if session.name else None
    if sub == b"LIST":
        sessions = list(session.state.sessions.values())
        if len(args) >= 4 and args[2].upper() == b"ID":
            wanted = {parse_int(a) for a in args[3:]}
            sessions = [s for s in sessions if s.id in wanted]
        return Verbatim("".join(client_line(s) + "\n" for s in sessions))
    if sub == b"INFO" and len(args) == 2:
        return Verbatim(client_line(session) + "\n")
    if sub == b"SETINFO" and len(args) == 4:
        attr = args[2].upper()
        if attr in (b"LIB-NAME", b"LIB-VER") and _NOT_NAME.search(args[3]):
            # As Redis 7.2: a newline here forged lines of CLIENT LIST.
            raise CommandError(
                f"{attr.decode().lower()} cannot contain spaces, newlines or special characters."
            )
        value = args[3].decode("utf-8", "replace")
        if attr == b"LIB-NAME":
            session.lib_name = value
        elif attr == b"LIB-VER":
            session.lib_ver = value
        else:
            raise CommandError(f"Unrecognized option '{args[2].decode('utf-8', 'replace')}'")
        return OK
    if sub == b"KILL" and len(args) >= 3:
        return _client_kill(session, args)
    if sub in (b"NO-EVICT", b"NO-TOUCH") and len(args) == 3:
        return OK
    name = args[1].decode("utf-8", "replace")
    raise CommandError(
        f"unknown subcommand or wrong number of arguments for '{name}'. Try CLIENT HELP."
    )


@command("COMMAND", -1, "", group="server")
def command_(session: Any, kv: Any, args: list[bytes]) -> Any:
    """COMMAND | COMMAND COUNT | COMMAND INFO name… | COMMAND DOCS [name…] | COMMAND LIST."""
    if len(args) == 1:
        return [c.info() for c in REGISTRY]
    sub = args[1].upper()
    if sub == b"COUNT":
        return len(REGISTRY)
    if sub == b"INFO":
        if len(args) == 2:
            return [c.info() for c in REGISTRY]
        out: list[Any] = []
        for name in args[2:]:
            found = REGISTRY.get(name)
            out.append(None if found is None else found.info())
        return out
    if sub == b"DOCS":
        names = args[2:]
        chosen = (
            list(REGISTRY)
            if not names
            else [c for c in (REGISTRY.get(n) for n in names) if c is not None]
        )
        return {c.name.lower(): c.docs() for c in chosen}
    if sub == b"LIST":
        return [c.name.lower() for c in REGISTRY]
    raise CommandError(
        f"unknown subcommand '{args[1].decode('utf-8', 'replace')}'. Try COMMAND HELP."
    )


@command("CONFIG", -2, "admin", group="server")
def config(session: Any, kv: Any, args: list[bytes]) -> Any:
    """CONFIG GET pattern… | CONFIG SET name value… | CONFIG RESETSTAT."""
    sub = args[1].upper()
    runtime = session.state.config
    if sub == b"GET" and len(args) >= 3:
        found: dict[str, str] = {}
        for pattern in args[2:]:
            found.update(runtime.get(pattern.decode("utf-8", "replace")))
        return {k: v.encode() for k, v in found.items()}
    if sub == b"SET" and len(args) >= 4 and len(args) % 2 == 0:
        text = [arg.decode("utf-8", "replace") for arg in args[2:]]
        runtime.set_many(list(zip(text[::2], text[1::2], strict=True)))
        return OK
    if sub == b"RESETSTAT" and len(args) == 2:
        session.state.reset_stats()
        return OK
    if sub == b"REWRITE":
        raise CommandError("CONFIG REWRITE is not supported: edit the TOML file instead")
    name = args[1].decode("utf-8", "replace")
    raise CommandError(f"unknown subcommand or wrong number of arguments for '{name}'")


# -- INFO ------------------------------------------------------------------------------


def _section(title: str, fields: dict[str, Any]) -> str:
    lines = [f"# {title}"]
    for key, value in fields.items():
        lines.append(f"{key}:{int(value) if isinstance(value, bool) else value}")
    return "\r\n".join(lines) + "\r\n"


def info_sections(state: Any) -> dict[str, dict[str, Any]]:
    """Every INFO section by lower-case name."""
    db = state.db
    stats = db.stats()
    now = time.time()
    uptime = int(now - state.started)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pipeline = stats.get("pipeline", {})
    jobs = dict(stats.get("jobs", {}))
    extra: dict[str, Any] = {}
    for source in state.info_sources:
        extra.update(source())
    server_jobs = extra.pop("server_jobs", {})
    durability = stats["durability"]
    sections: dict[str, dict[str, Any]] = {
        "server": {
            "redis_version": REDIS_VERSION,
            "amber_version": AMBER_VERSION,
            "redis_mode": "standalone",
            "os": f"{platform.system()} {platform.release()} {platform.machine()}",
            "arch_bits": 64 if sys.maxsize > 2**32 else 32,
            "multiplexing_api": "asyncio",
            "python_version": platform.python_version(),
            "process_id": state.pid,
            "run_id": _RUN_ID,
            "tcp_port": state.config.values.get("port", ""),
            "tls_port": state.config.values.get("tls-port", "-1"),
            "uptime_in_seconds": uptime,
            "uptime_in_days": uptime // 86400,
            "executable": sys.argv[0] if sys.argv else "",
        },
        "clients": {
            "connected_clients": len(state.sessions),
            "maxclients": state.config.values.get("maxclients", ""),
            "blocked_clients": 0,
            "pubsub_clients": sum(1 for s in state.sessions.values() if s.subscriptions),
            "watching_clients": sum(1 for s in state.sessions.values() if s.watched),
        },
        "memory": {
            "used_memory_rss": usage.ru_maxrss * 1024,
            "maxmemory": 0,
            "maxmemory_policy": "noeviction",
        },
        "persistence": {
            "loading": 0,
            "async_loading": 0,
            "aof_enabled": 1,
            "aof_rewrite_in_progress": 0,
            **snapshots_of(state).info(),
            "amber_durability": durability,
            "amber_appendfsync": _APPENDFSYNC.get(durability, durability),
            "amber_backend": stats["backend"],
            "amber_revision": stats["revision"],
            "amber_wal_bytes": pipeline.get("log_bytes", 0),
            "amber_wal_fsyncs": pipeline.get("fsyncs", 0),
            "amber_wal_flushes": pipeline.get("flushes", 0),
            "amber_storage_failed": pipeline.get("failed") or "",
        },
        "stats": {
            "total_connections_received": state.connections_received,
            "total_commands_processed": state.stats.total,
            "rejected_connections": state.rejected_connections,
            "client_output_buffer_limit_disconnections": state.output_limit_disconnections,
            "pubsub_channels": len(state.pubsub.channels),
            "pubsub_patterns": len(state.pubsub.patterns),
            "keyspace_notifications": state.config.values.get("notify-keyspace-events", ""),
        },
        "replication": _replication(stats),
        "cpu": {
            "used_cpu_sys": round(usage.ru_stime, 6),
            "used_cpu_user": round(usage.ru_utime, 6),
        },
        "amber": {
            "revision": stats["revision"],
            "backend": stats["backend"],
            "durability": durability,
            "tables": len(db.tables()),
            "watchers": stats.get("watch", {}).get("watchers", 0),
            **{f"job_{name}": _job_line(job) for name, job in jobs.items()},
            **{f"server_job_{name}": _job_line(job) for name, job in server_jobs.items()},
            **extra,
        },
    }
    sections["modules"] = {
        "module": ",".join(
            f"name={m['name']},ver={m['ver']},api=1,filters=0,usedby=[],using=[],options=[]"
            for m in _modules()
        )
    }
    # Hash slots are spoken with --cluster-mode redis; the Raft view is under "replication".
    sections["cluster"] = {"cluster_enabled": int(state.redis_cluster is not None)}
    tables = stats.get("tables", {})
    keys = sum(tables.values())
    sections["keyspace"] = {"db0": f"keys={keys},expires=0,avg_ttl=0"} if keys else {}
    sections["commandstats"] = {
        f"cmdstat_{name.lower()}": (
            f"calls={calls},usec={int(seconds * 1e6)},"
            f"usec_per_call={seconds * 1e6 / calls if calls else 0:.2f},"
            f"rejected_calls=0,failed_calls={failed}"
        )
        for name, (calls, failed, seconds, _) in sorted(state.stats.commands.items())
    }
    return sections


_APPENDFSYNC = {"always": "always", "interval": "everysec", "never": "no"}
_DEFAULT_SECTIONS = (
    "server", "clients", "memory", "persistence", "stats", "replication", "cpu", "modules",
    "cluster", "amber", "keyspace",
)  # fmt: skip

#: The RedisJSON release whose commands and replies Amber's JSON.* follow: what
#: MODULE LIST and INFO modules report, so clients that look for the module
#: (redis-py's tests, RedisJSON client libraries) find it.
REJSON_VERSION = 20609


def _modules() -> list[dict[str, Any]]:
    return [{"name": "ReJSON", "ver": REJSON_VERSION, "path": "built-in", "args": []}]


def _replication(stats: dict[str, Any]) -> dict[str, Any]:
    """Redis' replication fields; in a cluster, the Raft view as ``amber_cluster_*`` too."""
    cluster = stats.get("cluster")
    if cluster is None:
        return {
            "role": "master",
            "connected_slaves": 0,
            "master_failover_state": "no-failover",
            "master_replid": _RUN_ID,
            "master_repl_offset": stats["revision"],
        }
    leader = cluster["state"] == "leader"
    others = [m for m in cluster["members"] if not m["self"]]
    return {
        "role": "master" if leader else "slave",
        "connected_slaves": sum(1 for m in others if m["connected"]) if leader else 0,
        "master_failover_state": "no-failover",
        "master_repl_offset": cluster["commit_index"],
        "amber_cluster_node_id": cluster["node_id"],
        "amber_cluster_state": cluster["state"],
        "amber_cluster_leader": cluster["leader"] or "",
        "amber_cluster_term": cluster["term"],
        "amber_cluster_commit_index": cluster["commit_index"],
        "amber_cluster_applied_index": cluster["applied_index"],
        "amber_cluster_lag": cluster["lag"],
        "amber_cluster_members": len(cluster["members"]),
        "amber_cluster_has_quorum": int(cluster["has_quorum"]),
        "amber_cluster_healthy": int(cluster["healthy"]),
    }


def _job_line(job: dict[str, Any]) -> str:
    error = str(job.get("last_error") or "").replace(",", ";").replace("\n", " ")
    return (
        f"state={job.get('state')},runs={job.get('runs', 0)},failures={job.get('failures', 0)}"
        + (f",last_error={error}" if error else "")
    )


@command("INFO", -1, "", group="server")
def info(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Server information by section (``INFO [section …]``, ``all``, ``everything``)."""
    sections = info_sections(session.state)
    wanted = [a.decode("utf-8", "replace").lower() for a in args[1:]]
    if not wanted or wanted == ["default"]:
        names: list[str] = list(_DEFAULT_SECTIONS)
    elif any(w in ("all", "everything") for w in wanted):
        names = [*_DEFAULT_SECTIONS, "commandstats"]
    else:
        names = [w for w in wanted if w in sections]
    return Verbatim("\r\n".join(_section(n.capitalize(), sections[n]) for n in names))


@command("MODULE", -2, "", group="server")
def module(session: Any, kv: Any, args: list[bytes]) -> Any:
    """MODULE LIST | HELP: the JSON commands are built in, shown as RedisJSON (``ReJSON``)."""
    sub = args[1].upper()
    if sub == b"LIST" and len(args) == 2:
        # A map each (RESP3), flattened to name/value pairs in RESP2, as Redis does.
        return [
            {
                b"name": m["name"].encode(),
                b"ver": m["ver"],
                b"path": m["path"].encode(),
                b"args": [],
            }
            for m in _modules()
        ]
    if sub == b"HELP" and len(args) == 2:
        return [
            Simple("MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"),
            Simple("LIST"),
            Simple("    Return a list of loaded modules (Amber's JSON commands, built in)."),
        ]
    if sub in (b"LOAD", b"LOADEX", b"UNLOAD"):
        raise CommandError(
            f"MODULE {sub.decode()} is not supported: Amber's JSON commands are built in"
        )
    name = args[1].decode("utf-8", "replace")
    raise CommandError(f"unknown subcommand '{name}'. Try MODULE HELP.")


# -- snapshots: SAVE, BGSAVE, LASTSAVE ---------------------------------------------------


class Snapshots:
    """The snapshots one server writes on request (SAVE, BGSAVE), for INFO persistence.

    Each runs ``Database.snapshot`` on a worker thread, so the event loop keeps
    serving every client meanwhile; the database writes one snapshot at a time.
    Touched from the event loop only.
    """

    def __init__(self, db: Any) -> None:
        self.db = db
        #: Every snapshot task (SAVE and BGSAVE) not finished yet.
        self.running: set[asyncio.Task[Any]] = set()
        #: The BGSAVE in progress, and whether BGSAVE SCHEDULE asked for one after it.
        self.background: asyncio.Task[None] | None = None
        self.scheduled = False
        self.background_started = 0.0
        #: Like Redis: the start counts as a save (the data on disk was just loaded).
        self.last_save_time = int(time.time())
        self.revision_at_save = db.revision
        self.last_background_ok = True
        self.last_background_seconds = -1
        self.saves = 0

    async def save(self) -> None:
        """Write a snapshot on a worker thread; raises what went wrong."""
        revision = self.db.revision  # the snapshot covers at least this
        await asyncio.to_thread(self.db.snapshot)
        self.saves += 1
        self.last_save_time = int(time.time())
        self.revision_at_save = max(self.revision_at_save, revision)

    def track(self, job: Any) -> asyncio.Task[Any]:
        """Run ``job`` (a coroutine) as a task that shutdown waits for."""
        task = asyncio.get_running_loop().create_task(job)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    def start_background(self) -> bool:
        """Start a BGSAVE; False when one is in progress already."""
        if self.background is not None:
            return False
        self.background_started = time.monotonic()
        self.background = self.track(self._background())
        return True

    async def _background(self) -> None:
        try:
            await self.save()
        except Exception:
            log.exception("BGSAVE failed")
            self.last_background_ok = False
        else:
            self.last_background_ok = True
        finally:
            self.last_background_seconds = round(time.monotonic() - self.background_started)
            self.background = None
            if self.scheduled:
                self.scheduled = False
                self.start_background()

    async def wait_idle(self) -> None:
        """Return once no snapshot is being written (scheduled ones included)."""
        while self.running:
            await asyncio.wait(set(self.running))

    def info(self) -> dict[str, Any]:
        """The ``rdb_*`` lines of INFO persistence, with Redis' names and meaning."""
        background = self.background is not None
        return {
            "rdb_changes_since_last_save": max(0, self.db.revision - self.revision_at_save),
            "rdb_bgsave_in_progress": int(background),
            "rdb_last_save_time": self.last_save_time,
            "rdb_last_bgsave_status": "ok" if self.last_background_ok else "err",
            "rdb_last_bgsave_time_sec": self.last_background_seconds,
            "rdb_current_bgsave_time_sec": (
                round(time.monotonic() - self.background_started) if background else -1
            ),
            "rdb_saves": self.saves,
            "amber_snapshots_in_progress": len(self.running),
        }


_SNAPSHOTS: weakref.WeakKeyDictionary[Any, Snapshots] = weakref.WeakKeyDictionary()


def snapshots_of(state: Any) -> Snapshots:
    """The :class:`Snapshots` of one server (its ``ServerState``)."""
    found = _SNAPSHOTS.get(state)
    if found is None:
        found = _SNAPSHOTS[state] = Snapshots(state.db)
    return found


def _in_transaction(session: Any, kv: Any) -> bool:
    # Outside EXEC a command that is not a write reads through state.reads;
    # inside, every queued command gets EXEC's scope.
    return kv is not session.state.reads


@command("LASTSAVE", 1, "fast", group="server")
def lastsave(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Unix time of the last snapshot written (the server's start before any).

    Every acknowledged write is in the log as well, as durable as the mode
    promises; a snapshot only shortens recovery.
    """
    return snapshots_of(session.state).last_save_time


@command("SAVE", 1, "admin", group="server")
def save(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Write a snapshot, answering ``OK`` once it is on disk.

    It is written on a worker thread: this client waits, the others are served.
    """
    if _in_transaction(session, kv):
        raise CommandError("SAVE cannot run inside MULTI (it waits for the disk); use BGSAVE")
    snapshots = snapshots_of(session.state)

    async def run() -> Any:
        try:
            await snapshots.save()
        except Exception as exc:
            log.exception("SAVE failed")
            return error_reply(exc)
        return OK

    return snapshots.track(run())


@command("BGSAVE", -1, "admin", group="server")
def bgsave(session: Any, kv: Any, args: list[bytes]) -> Any:
    """``BGSAVE [SCHEDULE]``: start writing a snapshot and answer at once.

    Progress and outcome show in ``INFO persistence`` (``rdb_bgsave_in_progress``,
    ``rdb_last_bgsave_status``, ``rdb_last_save_time``). While one is being
    written, ``BGSAVE`` is an error and ``BGSAVE SCHEDULE`` queues one more.
    """
    if len(args) > 2 or (len(args) == 2 and args[1].upper() != b"SCHEDULE"):
        raise syntax_error()
    snapshots = snapshots_of(session.state)
    if snapshots.start_background():
        return Simple("Background saving started")
    if len(args) == 2:
        snapshots.scheduled = True
        return Simple("Background saving scheduled")
    raise CommandError("Background save already in progress")


@command("AMBER.BACKUP", -2, "admin", group="amber")
def amber_backup(session: Any, kv: Any, args: list[bytes]) -> Any:
    """Back up the database at one revision, online: ``AMBER.BACKUP <name> [REPLACE]``.

    ``name`` is a file inside the server's backup folder (``--backup-dir``,
    default DATA/backups), or an ``s3://`` URL under ``--backup-s3``: a
    client never chooses a path elsewhere on the host (see
    ``BackupPolicy``). An existing backup is replaced only with REPLACE.
    The capture holds writers for microseconds; encoding and I/O run on a
    worker thread, so the event loop keeps serving. Replies with the
    revision, tables, keys, bytes, location.
    """
    if len(args) > 3 or (len(args) == 3 and args[2].upper() != b"REPLACE"):
        raise syntax_error()
    try:
        name = args[1].decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("backup destination must be UTF-8") from None
    if _in_transaction(session, kv):
        raise CommandError("AMBER.BACKUP cannot run inside MULTI (it waits for the disk)")
    dest = session.state.ctx.backups.resolve(name, replace=len(args) == 3)
    db = session.state.db

    async def run() -> Any:
        try:
            info = await asyncio.to_thread(backup, db, dest)
        except Exception as exc:
            return error_reply(exc)
        return {
            "revision": info.revision,
            "tables": info.tables,
            "keys": info.keys,
            "bytes": info.bytes,
            "location": str(info.location),
        }

    return asyncio.get_running_loop().create_task(run())
