"""The one command table: name, arity, flags, key positions, handler.

Every front end looks commands up here (style: redis-py's one command
table), so a command is written once. A handler is a plain function
``handler(session, kv, args) -> reply``:

- ``session`` (:class:`~.session.Session`): the caller's connection state and
  the server it talks to;
- ``kv``: what the command may read and write — the database itself for a
  read-only command, a :class:`~.scope.Scope` that records reads and writes
  for a ``write`` command (committed as one atomic batch after the handler
  returns, so nothing is half-applied), the MULTI scope inside EXEC;
- ``args``: the command's words as ``bytes``, ``args[0]`` being its name.

A handler returns a reply (see :mod:`amber.server.resp.protocol` for the
types) or, for a write whose reply depends on what the commit found (how many
keys ``DEL`` removed), a :class:`Later`. It raises :class:`CommandError` —
or any ``amber.errors`` exception, mapped by ``wire_errors`` — to answer an
error.

A write command may also have a **blind form** (``Registry.blind``):
``blind(session, args) -> (ops, reply) | None`` for its calls that read
nothing (``SET k v``), returning checked ops straight away, without a
:class:`~.scope.Scope`; ``None`` means "not this call, run the handler".
It is the hot path of the commonest writes, so it must answer exactly what
the handler would.

Flags (Redis' own names where Redis has them):

- ``write`` / ``readonly``: may change data / only reads it;
- ``admin``: server administration (CONFIG, FLUSHALL …);
- ``noauth``: allowed before AUTH when a password is set (as in Redis: only AUTH,
  HELLO — which itself answers NOAUTH unless it carries AUTH —, QUIT and RESET);
- ``pubsub``: allowed in RESP2 subscribed mode;
- ``nomulti``: runs at once inside MULTI instead of being queued;
- ``fast``: O(1) (informational, COMMAND INFO).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .replies import Simple

__all__ = [
    "REGISTRY",
    "Command",
    "CommandError",
    "Entries",
    "Later",
    "Registry",
    "arity_error",
    "syntax_error",
]

Handler = Callable[[Any, Any, list[bytes]], Any]
#: ``blind(session, args)``: the ops and reply of a call that reads nothing, or None.
BlindForm = Callable[[Any, list[bytes]], "tuple[list[Any], Any] | None"]

FLAGS = frozenset(("write", "readonly", "admin", "noauth", "pubsub", "nomulti", "fast", "loading"))


class CommandError(Exception):
    """An error reply: ``code`` is its first word (``ERR``, ``WRONGTYPE``, …)."""

    def __init__(self, message: str, code: str = "ERR") -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def reply_text(self) -> str:
        return f"{self.code} {self.message}"


def syntax_error() -> CommandError:
    return CommandError("syntax error")


def arity_error(name: str) -> CommandError:
    return CommandError(f"wrong number of arguments for '{name.lower()}' command")


class Entries(list[Any]):
    """What a commit did for one command: an entry per op, the revision, and (eventual
    tables) each write's stamp."""

    __slots__ = ("revision", "stamps")

    def __init__(
        self, entries: list[Any], revision: int, stamps: Sequence[tuple[int, int, str]] = ()
    ) -> None:
        super().__init__(entries)
        self.revision = revision
        self.stamps = stamps


class Later:
    """A reply computed from the commit's result (:class:`Entries` of this command)."""

    __slots__ = ("finish",)

    def __init__(self, finish: Callable[[Entries], Any]) -> None:
        self.finish = finish


@dataclass(frozen=True, slots=True)
class Command:
    """One command: how it is called and what it may do."""

    name: str
    #: Redis' convention: N means exactly N words (name included), -N at least N.
    arity: int
    flags: frozenset[str]
    handler: Handler
    #: Key positions for COMMAND INFO (first, last, step; last -1: to the end).
    keys: tuple[int, int, int]
    group: str
    summary: str
    #: The calls that read nothing, without a scope (see the module doc).
    blind: BlindForm | None = None
    #: The flags the dispatcher tests on every call, as plain attributes.
    #: The number of words (name included) a call may have: ``arity_ok`` unrolled.
    min_args: int = field(init=False)
    max_args: int = field(init=False)
    is_write: bool = field(init=False)
    noauth: bool = field(init=False)
    nomulti: bool = field(init=False)
    pubsub: bool = field(init=False)
    #: Its keys may be several (MSET, DEL …): checked for CROSSSLOT in Redis Cluster mode.
    multi_key: bool = field(init=False)

    def __post_init__(self) -> None:
        flags = self.flags
        arity = self.arity
        object.__setattr__(self, "min_args", arity if arity >= 0 else -arity)
        object.__setattr__(self, "max_args", arity if arity >= 0 else sys.maxsize)
        object.__setattr__(self, "is_write", "write" in flags)
        object.__setattr__(self, "noauth", "noauth" in flags)
        object.__setattr__(self, "nomulti", "nomulti" in flags)
        object.__setattr__(self, "pubsub", "pubsub" in flags)
        first, last, _step = self.keys
        object.__setattr__(self, "multi_key", first > 0 and last != first)

    def key_args(self, args: list[bytes]) -> list[bytes]:
        """The keys of one call of this command, by its ``(first, last, step)`` key spec."""
        first, last, step = self.keys
        if first <= 0:
            return []
        end = len(args) + last if last < 0 else last
        return args[first : end + 1 : step]

    def arity_ok(self, count: int) -> bool:
        arity = self.arity
        return count == arity if arity >= 0 else count >= -arity

    def info(self) -> list[Any]:
        """The COMMAND INFO entry (the RESP2 form of Redis 7)."""
        first, last, step = self.keys
        return [
            self.name.lower(),
            self.arity,
            [Simple(f) for f in sorted(self.flags)],
            first,
            last,
            step,
            [Simple(f"@{self.group}")],
            [],
            [],
            [],
        ]

    def docs(self) -> dict[str, Any]:
        """The COMMAND DOCS entry."""
        return {"summary": self.summary, "since": "1.0.0", "group": self.group}


class Registry:
    """Commands by upper-case name; filled at import, read-only afterwards."""

    def __init__(self) -> None:
        self._commands: dict[bytes, Command] = {}

    def command(
        self,
        name: str,
        arity: int,
        flags: str = "",
        *,
        keys: tuple[int, int, int] = (0, 0, 0),
        group: str = "generic",
        summary: str = "",
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler as ``name``."""
        flag_set = frozenset(flags.split())
        unknown = flag_set - FLAGS
        if unknown:
            raise ValueError(f"unknown command flags {sorted(unknown)} for {name}")

        def register(handler: Handler) -> Handler:
            key = name.upper().encode()
            if key in self._commands:
                raise ValueError(f"command {name} registered twice")
            doc = summary or (handler.__doc__ or "").strip().split("\n")[0]
            self._commands[key] = Command(name.upper(), arity, flag_set, handler, keys, group, doc)
            return handler

        return register

    def blind(self, name: str) -> Callable[[BlindForm], BlindForm]:
        """Give the registered write command ``name`` the decorated blind form."""

        def register(form: BlindForm) -> BlindForm:
            key = name.upper().encode()
            command = self._commands[key]
            if not command.is_write or command.blind is not None:
                raise ValueError(f"{name} is no write command or has a blind form already")
            self._commands[key] = replace(command, blind=form)
            return form

        return register

    def get(self, name: bytes) -> Command | None:
        """The command called ``name`` (any case), or None."""
        command = self._commands.get(name)
        if command is None:
            command = self._commands.get(name.upper())
        return command

    def __iter__(self) -> Iterator[Command]:
        return iter(self._commands.values())

    def __len__(self) -> int:
        return len(self._commands)


#: The command table every front end shares.
REGISTRY = Registry()
