"""Registry from env name (the ``--env`` flag) to its ``EnvSource``; importing it registers ``ShapeHerd-v0``.

Names: ``carracing``, ``shapeherd``, ``airstriker``, ``sonic`` (``--state`` picks the level) and
``dmc:<domain>-<task>`` for any DeepMind Control Suite task.
"""
from __future__ import annotations

import gymnasium as gym

from envs.base import EnvSource, EnvUnavailable
from envs.carracing import CarRacing
from envs.policies import KINDS as POLICIES
from envs.retro import Airstriker, RetroGame, Sonic
from envs.shapeherd import ShapeHerd

_SOURCES: dict[str, type[EnvSource]] = {
    "carracing": CarRacing, "shapeherd": ShapeHerd, "airstriker": Airstriker, "sonic": Sonic,
}

if "ShapeHerd-v0" not in gym.registry:
    gym.register("ShapeHerd-v0", entry_point="envs.shapeherd:ShapeHerdEnv", max_episode_steps=ShapeHerd.default_max_steps)


def names() -> list[str]:
    return sorted(_SOURCES) + ["dmc:<domain>-<task>"]


def get(name: str, state: str | None = None) -> EnvSource:
    """The source registered as ``name`` (``state``: the level of a retro game); KeyError with the known
    names if there is none."""
    if name.startswith("dmc:"):
        domain, _, task = name[4:].partition("-")
        from envs.dmc import DMC  # imports dm_control: only when asked for

        return DMC(domain, task.replace("-", "_"))
    if name not in _SOURCES:
        raise KeyError(f"unknown env {name!r}: choose one of {', '.join(names())}")
    source = _SOURCES[name]
    return source(state) if issubclass(source, RetroGame) else source()


__all__ = ["EnvSource", "EnvUnavailable", "POLICIES", "get", "names"]
