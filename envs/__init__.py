"""Registry from env name (the ``--env`` flag) to its ``EnvSource``."""
from __future__ import annotations

from envs.base import EnvSource, ExplorationPolicy
from envs.carracing import CarRacing

POLICIES = ("brownian", "random")

_SOURCES: dict[str, type[EnvSource]] = {"carracing": CarRacing}


def names() -> list[str]:
    return sorted(_SOURCES)


def get(name: str) -> EnvSource:
    """The source registered as ``name``; raises KeyError with the known names if there is none."""
    try:
        return _SOURCES[name]()
    except KeyError:
        raise KeyError(f"unknown env {name!r}: choose one of {', '.join(names())}") from None


__all__ = ["EnvSource", "ExplorationPolicy", "POLICIES", "get", "names"]
