"""Fixtures of the adversarial suite (see :mod:`attack_support`)."""

from __future__ import annotations

from attack_support import sandbox, server_factory

__all__ = ["sandbox", "server_factory"]
