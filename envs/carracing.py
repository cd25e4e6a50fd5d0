"""Gymnasium's CarRacing-v3, preprocessed and driven as in Ha & Schmidhuber (2018).

``CarRacing.make`` builds ``FastCarRacing`` (``envs/fast_carracing.py``), a drop-in subclass of Gymnasium's
``CarRacing`` whose frames are byte-for-byte those of the stock env but rendered several times faster.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.base import EnvSource, arrows
from envs.fast_carracing import FAST_ID, FastCarRacing  # noqa: F401 (FastCarRacing: re-exported)
from envs.fast_carracing_vector import FastCarRacingVector
from envs.resample import resize

FRAME = 64
CROP_ROWS = 84  # the top 84 of 96 rows: drops the dashboard
BRAKE = 0.8  # keyboard play: Gymnasium's own keyboard play brakes at 0.8, as a full brake locks the wheels


def crop_resize(obs: np.ndarray) -> np.ndarray:
    """(96, 96, 3) uint8 → (64, 64, 3) uint8: dashboard cropped, then resized as Pillow's bilinear filter does
    (``envs.resample``: Pillow's bytes, compiled)."""
    return resize(np.asarray(obs, dtype=np.uint8)[None, :CROP_ROWS], FRAME, FRAME)[0]


class CarRacing(EnvSource):
    name = "carracing"
    default_max_steps = 1000
    preprocessing = "crop top 84 rows, bilinear resize to 64x64, uint8"
    action_space = gym.spaces.Box(np.array([-1, 0, 0], np.float32), np.array([1, 1, 1], np.float32))
    env_id = FAST_ID  # the bench sets "CarRacing-v3" on an instance to time the stock env in the same loop
    keyboard_help = "←/→ steer, ↑ gas, ↓ brake"
    vector = True  # the bench sets False on an instance to time side-by-side episodes on single envs

    def make(self, max_steps: int) -> gym.Env:
        return gym.make(self.env_id, max_episode_steps=max_steps)

    def make_vector(self, num_envs: int, max_steps: int) -> FastCarRacingVector | None:
        """``FastCarRacingVector``, its cars rendering through one set of working buffers (none for the stock env)."""
        fast = self.vector and self.env_id == FAST_ID
        return FastCarRacingVector(num_envs, max_episode_steps=max_steps) if fast else None

    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        return crop_resize(obs)

    def controller_action(self, out: np.ndarray) -> np.ndarray:
        """steer = a0, gas = (a1 + 1) / 2, brake = clip(a2, 0, 1) (Ha's mapping)."""
        out = np.asarray(out, dtype=np.float32)
        return np.array([out[0], (out[1] + 1.0) / 2.0, np.clip(out[2], 0.0, 1.0)], dtype=np.float32)

    def keyboard_action(self, held: frozenset[str], last=None) -> np.ndarray:
        """←/→ steer fully, ↑ full gas, ↓ brake at ``BRAKE``."""
        left, right, up, down = arrows(held)
        return np.array([right - left, up, BRAKE * down], dtype=np.float32)
