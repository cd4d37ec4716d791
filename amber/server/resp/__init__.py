"""The Redis protocol front end (RESP2 and RESP3), sans-I/O core plus asyncio shell.

- :mod:`.protocol`: bytes → commands (hiredis) and replies → bytes; no I/O;
- :mod:`.connection`: the asyncio ``Protocol`` per socket and the listener.

Commands themselves live in :mod:`amber.server.commands`, shared by every
front end.
"""

from .connection import RespConnection, RespLimits, RespServer
from .protocol import ProtocolError, RequestParser, encoder_for

__all__ = [
    "ProtocolError",
    "RequestParser",
    "RespConnection",
    "RespLimits",
    "RespServer",
    "encoder_for",
]
