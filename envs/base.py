"""What the pipeline needs to know about a data source, in one small interface.

The stages never import an environment directly: they ask the registry in ``envs/__init__.py`` for an
``EnvSource`` and use only what is defined here (frames, an action space, rewards).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import gymnasium as gym
import numpy as np

from envs import policies
from envs.policies import ExplorationPolicy


def arrows(held: frozenset[str]) -> tuple[float, float, float, float]:
    """Which arrow keys are held, as floats (1.0 held, 0.0 not): left, right, up, down."""
    return tuple(float(k in held) for k in ("left", "right", "up", "down"))


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
    # Discrete actions that are button presses: the buttons of each action (e.g. ["LEFT", "B"]). Keyboard play
    # picks the action whose buttons match the held keys.
    combos: Sequence[Sequence[str]] = ()

    @property
    def discrete(self) -> bool:
        return isinstance(self.action_space, gym.spaces.Discrete)

    @property
    def action_dim(self) -> int:
        return int(self.action_space.n) if self.discrete else int(np.prod(self.action_space.shape))

    @abstractmethod
    def make(self, max_steps: int) -> gym.Env:
        """A fresh env whose episodes end after at most ``max_steps`` steps."""

    def make_vector(self, num_envs: int, max_steps: int) -> gym.vector.VectorEnv | None:
        """``num_envs`` envs as one vector env (next-step autoreset) whose ``step`` also takes EnvPool's
        ``env_id`` (step only those envs), each env exactly ``make(max_steps)``'s; None where the source has
        none (``envs.lockstep`` then plays single envs side by side)."""
        return None

    @abstractmethod
    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        """An env observation → (64, 64, 3) uint8."""

    def controller_action(self, out: np.ndarray) -> np.ndarray | int:
        """C's tanh outputs (action_dim,) in [-1, 1] → the env's action. Discrete: the argmax; continuous
        sources override this with their own mapping."""
        if self.discrete:
            return int(np.argmax(out))
        raise NotImplementedError(f"{type(self).__name__} must map C's outputs to its Box actions")

    @property
    def keyboard_help(self) -> str:
        """What the keys do when a person drives this source (``keyboard_action``), in words."""
        if self.discrete:
            buttons = "arrows (and space for B) pick the matching button combination, or " if self.combos else ""
            last = min(9, self.action_dim)
            return f"{buttons}1–{last} pick action 1–{last}"
        return "←/→ move action dimension 0 to the ends of its range, ↑/↓ dimension 1; the rest stay at mid-range"

    def keyboard_action(self, held: frozenset[str], last=None) -> np.ndarray | int:
        """Held key names ("left", "right", "up", "down", "space", "1"…"9") → an action in the env's own space;
        ``last`` is the action taken before (None at the start).

        Discrete actions: a digit picks that action (1 = the first); else the action whose ``combos`` entry
        (arrows, space = B) matches the held keys exactly; else the last action (the first at the start).
        Box actions: ←/→ move dimension 0 and ↑/↓ dimension 1 to the ends of their ranges, the rest stay at
        mid-range. Sources with their own bindings override this.
        """
        if self.discrete:
            digits = sorted(int(k) for k in held if k.isdigit() and 1 <= int(k) <= self.action_dim)
            if digits:
                return digits[-1] - 1
            buttons = {"left": "LEFT", "right": "RIGHT", "up": "UP", "down": "DOWN", "space": "B"}
            pressed = {buttons[k] for k in held if k in buttons}
            for i, combo in enumerate(self.combos):
                if set(combo) == pressed:
                    return i
            return 0 if last is None else last
        left, right, up, down = arrows(held)
        low = self.action_space.low.astype(np.float32)
        high = self.action_space.high.astype(np.float32)
        action = (low + high) / 2
        if left or right:
            action[0] = low[0] if left else high[0]
        if len(action) > 1 and (up or down):
            action[1] = high[1] if up else low[1]
        return action

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

    def space_json(self) -> dict:
        """The spaces of what the rollout store keeps: 64×64×3 uint8 frames (not the env's own observations) and
        the actions as the source defines them."""
        return {"observation": repr(gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)), "action": repr(self.action_space)}
