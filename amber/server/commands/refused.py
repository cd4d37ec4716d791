"""List, set and sorted-set commands, refused with an error that says what to use.

Amber stores JSON documents, so it has no list, set or sorted-set types;
their commands answer ``ERR <CMD> is not supported: …`` naming the JSON
command that does the job, rather than "unknown command". It is an error
reply, never a disconnect, so a client (or redis-benchmark's default run)
carries on past them. They are in the command table (COMMAND INFO lists
them, group and summary saying so), flagged neither write nor readonly:
they never touch data, and inside MULTI they queue and fail at EXEC like
any command that errors.
"""

from __future__ import annotations

from typing import Any

from .registry import REGISTRY, CommandError

_HINTS = {
    "list": "use JSON arrays (JSON.ARRAPPEND, JSON.ARRPOP, JSON.ARRINSERT …)",
    "set": "use JSON arrays (JSON.ARRAPPEND, JSON.ARRINDEX …) or hashes (HSET, HEXISTS …)",
    "sortedset": "use JSON arrays (JSON.ARRAPPEND …) or hashes (HSET, HINCRBYFLOAT …)",
}

#: group -> the commands of that Redis type.
REFUSED: dict[str, tuple[str, ...]] = {
    "list": (
        "LPUSH",
        "RPUSH",
        "LPUSHX",
        "RPUSHX",
        "LPOP",
        "RPOP",
        "LRANGE",
        "LLEN",
        "LINDEX",
        "LSET",
        "LREM",
        "LTRIM",
        "LINSERT",
        "LPOS",
        "LMOVE",
        "RPOPLPUSH",
        "BLPOP",
        "BRPOP",
        "BLMOVE",
        "BRPOPLPUSH",
        "LMPOP",
        "BLMPOP",
    ),
    "set": (
        "SADD",
        "SREM",
        "SMEMBERS",
        "SISMEMBER",
        "SMISMEMBER",
        "SCARD",
        "SPOP",
        "SRANDMEMBER",
        "SMOVE",
        "SINTER",
        "SINTERCARD",
        "SINTERSTORE",
        "SUNION",
        "SUNIONSTORE",
        "SDIFF",
        "SDIFFSTORE",
        "SSCAN",
    ),
    "sortedset": (
        "ZADD",
        "ZRANGE",
        "ZREM",
        "ZSCORE",
        "ZCARD",
        "ZINCRBY",
        "ZRANK",
        "ZREVRANK",
        "ZCOUNT",
        "ZRANGEBYSCORE",
        "ZREVRANGE",
        "ZREVRANGEBYSCORE",
        "ZRANGEBYLEX",
        "ZREVRANGEBYLEX",
        "ZLEXCOUNT",
        "ZPOPMIN",
        "ZPOPMAX",
        "BZPOPMIN",
        "BZPOPMAX",
        "ZMSCORE",
        "ZREMRANGEBYSCORE",
        "ZREMRANGEBYRANK",
        "ZREMRANGEBYLEX",
        "ZUNIONSTORE",
        "ZINTERSTORE",
        "ZRANDMEMBER",
        "ZSCAN",
        "ZMPOP",
        "BZMPOP",
        "ZRANGESTORE",
        "ZUNION",
        "ZINTER",
        "ZDIFF",
        "ZDIFFSTORE",
        "ZINTERCARD",
    ),
}
_GROUP = {name: group for group, names in REFUSED.items() for name in names}


def _refuse(session: Any, kv: Any, args: list[bytes]) -> Any:
    name = args[0].decode("utf-8", "replace").upper()
    hint = _HINTS[_GROUP[name]]
    raise CommandError(f"{name} is not supported: Amber stores JSON documents; {hint}")


# Arity -1: any call, however many words, gets the explanation (not an arity error).
for _name, _group in _GROUP.items():
    REGISTRY.command(
        _name, -1, keys=(1, 1, 1), group=_group, summary=f"Not supported: {_HINTS[_group]}"
    )(_refuse)
