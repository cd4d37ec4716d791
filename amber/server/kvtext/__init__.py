"""The KV text front end: the line protocol of Elixir's "Mix and OTP" KV server.

- :mod:`.protocol` — sans-I/O: lines to requests, replies to bytes;
- :mod:`.session` — what each request does to the database (buckets are tables);
- :mod:`.server` — :func:`start_kvtext`, the asyncio listener.
"""

from .server import start_kvtext

__all__ = ["start_kvtext"]
