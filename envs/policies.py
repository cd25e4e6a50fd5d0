"""Exploration policies that 01_collect.py plays (``--policy``), for continuous and discrete actions."""
from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np

KINDS = ("brownian", "random")


class ExplorationPolicy(ABC):
    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def act(self) -> np.ndarray | int:
        """The next action, in the env's own action space."""


class BrownianPolicy(ExplorationPolicy):
    """a_{t+1} = clip(a_t + N(0, scale²)) per dimension: smooth, wandering actions. The default scale² = 1/50 is the
    discretised Brownian motion of ctallec/world-models' reproduction of World Models (see docs/reference.md)."""

    def __init__(self, space: gym.spaces.Box, rng: np.random.Generator, scale: float | np.ndarray = np.sqrt(1 / 50)):
        self.space, self.rng, self.scale = space, rng, scale
        self.reset()

    def reset(self) -> None:
        self.action = self.rng.uniform(self.space.low, self.space.high).astype(np.float32)

    def act(self) -> np.ndarray:
        step = self.rng.normal(0.0, self.scale, size=self.action.shape)
        self.action = np.clip(self.action + step, self.space.low, self.space.high).astype(np.float32)
        return self.action.copy()


class UniformPolicy(ExplorationPolicy):
    """Independent uniform actions each step (continuous or discrete)."""

    def __init__(self, space: gym.spaces.Box | gym.spaces.Discrete, rng: np.random.Generator):
        self.space, self.rng = space, rng

    def reset(self) -> None:
        pass

    def act(self) -> np.ndarray | int:
        if isinstance(self.space, gym.spaces.Discrete):
            return int(self.rng.integers(self.space.n))
        return self.rng.uniform(self.space.low, self.space.high).astype(np.float32)


class StickyPolicy(ExplorationPolicy):
    """The discrete counterpart of Brownian motion: keep the last action, switching to a uniformly drawn one
    with probability ``switch`` per step (mean run length 1/switch), so the agent commits to moves."""

    def __init__(self, space: gym.spaces.Discrete, rng: np.random.Generator, switch: float = 1 / 8):
        self.space, self.rng, self.switch = space, rng, switch
        self.reset()

    def reset(self) -> None:
        self.action = int(self.rng.integers(self.space.n))

    def act(self) -> int:
        if self.rng.random() < self.switch:
            self.action = int(self.rng.integers(self.space.n))
        return self.action


def make(kind: str, space: gym.Space, rng: np.random.Generator, brownian_scale: float | np.ndarray) -> ExplorationPolicy:
    """``brownian`` (sticky for discrete actions) or ``random`` for ``space``."""
    if kind not in KINDS:
        raise ValueError(f"unknown exploration policy {kind!r}: choose from {', '.join(KINDS)}")
    if kind == "random":
        return UniformPolicy(space, rng)
    if isinstance(space, gym.spaces.Discrete):
        return StickyPolicy(space, rng)
    return BrownianPolicy(space, rng, brownian_scale)
