"""What the pipeline needs to know about a data source, in one small interface.

The stages never import an environment directly: they ask the registry in ``envs/__init__.py`` for an
``EnvSource`` and use only what is defined here (frames, an action space, rewards).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np


class EnvSource(ABC):
    """One data source: how to make its env, turn its frames into 64×64×3 uint8, and map actions.

    ``action_dim`` is the size of the action vector M sees and C outputs. Continuous sources store
    actions as float32 vectors of that size.
    """

    name: str
    action_dim: int
    default_max_steps: int
    preprocessing: str

    @abstractmethod
    def make(self, max_steps: int) -> gym.Env:
        """A fresh env whose episodes end after at most ``max_steps`` steps."""

    @abstractmethod
    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 env frame → (64, 64, 3) uint8."""

    @abstractmethod
    def controller_action(self, out: np.ndarray) -> np.ndarray:
        """C's tanh outputs (A,) in [-1, 1] → the env's action."""

    @abstractmethod
    def exploration_policy(self, kind: str, rng: np.random.Generator) -> ExplorationPolicy:
        """The policy 01_collect.py plays: ``brownian`` or ``random``."""

    def space_json(self, env: gym.Env) -> dict:
        return {"observation": repr(env.observation_space), "action": repr(env.action_space)}


class ExplorationPolicy(ABC):
    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def act(self) -> np.ndarray:
        """The next action, in the env's own action space."""
