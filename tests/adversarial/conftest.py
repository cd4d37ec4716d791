"""Fixtures of the adversarial suite (see :mod:`attack_support`)."""

from __future__ import annotations

from attack_support import redis_server, sandbox, server_factory

__all__ = ["redis_server", "sandbox", "server_factory"]
