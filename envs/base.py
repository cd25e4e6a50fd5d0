"""What the pipeline needs to know about a data source, in one small interface.

The stages never import an environment directly: they ask the registry in ``envs/__init__.py`` for an
``EnvSource`` and use only what is defined here (frames, an action space, rewards).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np

from envs import policies
from envs.policies import ExplorationPolicy


class EnvUnavailable(Exception):
    """The source cannot run here (a missing package, ROM or system library); the message names the fix."""


class EnvSource(ABC):
    """One data source: how to make its env, turn its frames into 64×64×3 uint8, and map actions.

    ``action_space`` is the env's own (a Box, or a Discrete action set). ``action_dim`` is the size of the
    action vector M reads and C outputs: the Box's size, or the number of discrete actions (M reads them
    one-hot, C picks one by argmax). The rollout store keeps continuous actions as (T, A) float32 and
    discrete ones as (T,) int64.
    """

    name: str
    default_max_steps: int
    preprocessing: str
    action_space: gym.spaces.Box | gym.spaces.Discrete
    brownian_scale: float | np.ndarray = np.sqrt(1 / 50)
    # Emulators that allow one instance per process (stable-retro) set this to 1: episodes then run one by one.
    max_envs_per_process: int | None = None

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        return int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))

    @abstractmethod
    def make(self, max_steps: int) -> gym.Env:
        """A fresh env whose episodes end after at most ``max_steps`` steps."""

    @abstractmethod
    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        """An env observation → (64, 64, 3) uint8."""

    def controller_action(self, out: np.ndarray) -> np.ndarray | int:
        """C's tanh outputs (action_dim,) in [-1, 1] → the env's action. Discrete: the argmax; continuous
        sources override this with their own mapping."""
        if self.discrete:
            return int(np.argmax(out))
        raise NotImplementedError(f"{type(self).__name__} must map C's outputs to its Box actions")

    def exploration_policy(self, kind: str, rng: np.random.Generator) -> ExplorationPolicy:
        """The policy 01_collect.py plays: ``brownian`` (sticky for discrete actions) or ``random``."""
        return policies.make(kind, self.action_space, rng, self.brownian_scale)

    def stored_actions(self, actions: list) -> np.ndarray:
        """A list of T env actions → the array the rollout store keeps: (T,) int64 or (T, A) float32."""
        if self.discrete:
            return np.asarray(actions, dtype=np.int64).reshape(len(actions))
        return np.asarray(actions, dtype=np.float32).reshape(len(actions), self.action_dim)

    def encode_actions(self, actions: np.ndarray) -> np.ndarray:
        """Stored actions → what M reads, (T, action_dim) float32: one-hot for discrete actions."""
        if self.discrete:
            return np.eye(self.action_dim, dtype=np.float32)[np.asarray(actions, dtype=np.int64)]
        return np.asarray(actions, dtype=np.float32).reshape(len(actions), self.action_dim)

    def space_json(self, env: gym.Env) -> dict:
        return {"observation": repr(env.observation_space), "action": repr(env.action_space)}
