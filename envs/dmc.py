"""DeepMind Control Suite tasks from pixels: ``--env dmc:<domain>-<task>`` (e.g. ``dmc:walker-walk``).

Frames are rendered headless at 64×64 by MuJoCo (``MUJOCO_GL=egl`` unless set otherwise) from camera 2
for quadruped and camera 0 otherwise, with an action repeat of 2; actions are continuous in [−1, 1].
"""
from __future__ import annotations

import os

import gymnasium as gym
import numpy as np

from envs.base import EnvSource, EnvUnavailable

FRAME = 64
ACTION_REPEAT = 2
HEADLESS_HELP = ("headless rendering needs EGL: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri "
                 "(or libosmesa6 with MUJOCO_GL=osmesa)")


def _suite():
    os.environ.setdefault("MUJOCO_GL", "egl")  # before dm_control imports mujoco: headless by default
    try:
        from dm_control import suite
    except ImportError as e:
        raise EnvUnavailable(f"DeepMind Control needs dm_control and mujoco<4 (pip install dm_control 'mujoco<4'): {e}") from None
    return suite


class DMCEnv(gym.Env):
    """A dm_control task as a Gymnasium env with pixel observations (64, 64, 3) uint8.

    ``reset(seed=s)`` reseeds the task's own random state, so a seed reproduces the initial state exactly.
    An episode terminates when the task's discount drops to 0 and is truncated at the task's time limit.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, domain: str, task: str, action_repeat: int = ACTION_REPEAT, size: int = FRAME):
        suite = _suite()
        self.env = suite.load(domain, task, task_kwargs={"random": 0})
        self.camera = 2 if domain == "quadruped" else 0
        self.action_repeat, self.size = action_repeat, size
        spec = self.env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32))
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def _frame(self) -> np.ndarray:
        try:
            return self.env.physics.render(self.size, self.size, camera_id=self.camera)
        except Exception as e:  # MuJoCo reports a missing GL in several exception types
            raise EnvUnavailable(f"dm_control could not render ({type(e).__name__}: {e}); {HEADLESS_HELP}") from None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.env.task._random = np.random.RandomState(seed)  # the task draws its initial state from this
        self.env.reset()
        return self._frame(), {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), self.action_space.low, self.action_space.high)
        total = 0.0
        for _ in range(self.action_repeat):
            ts = self.env.step(action)
            total += ts.reward or 0.0
            if ts.last():
                break
        terminated = ts.last() and ts.discount == 0
        truncated = ts.last() and not terminated
        return self._frame(), total, bool(terminated), bool(truncated), {}

    def render(self):
        return self._frame()


class DMC(EnvSource):
    """``dmc:<domain>-<task>``; the suite's 1000-step limit is 500 agent steps at action repeat 2."""

    default_max_steps = 500
    preprocessing = f"MuJoCo render 64x64 (camera 2 for quadruped, else 0), uint8; action repeat {ACTION_REPEAT}"

    def __init__(self, domain: str, task: str):
        suite = _suite()
        if (domain, task) not in suite.ALL_TASKS:
            known = ", ".join(f"dmc:{d}-{t}" for d, t in suite.ALL_TASKS[:6])
            raise KeyError(f"unknown DeepMind Control task {domain}-{task}: e.g. {known}, …")
        self.domain, self.task = domain, task
        self.name = f"dmc:{domain}-{task}"
        spec = suite.load(domain, task).action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32))

    def make(self, max_steps: int) -> gym.Env:
        return gym.wrappers.TimeLimit(DMCEnv(self.domain, self.task), max_steps)

    def preprocess(self, obs: np.ndarray) -> np.ndarray:
        return np.asarray(obs, dtype=np.uint8)

    def controller_action(self, out: np.ndarray) -> np.ndarray:
        """tanh outputs are already in the suite's [−1, 1] action range."""
        return np.clip(np.asarray(out, dtype=np.float32), self.action_space.low, self.action_space.high)
