"""``FastCarRacingVector``: N ``FastCarRacing`` cars stepped in one process, as one Gymnasium vector env.

Per env it is exactly ``gym.make_vec("FastCarRacing-v3", num_envs=N, vectorization_mode="sync")``: the same
observations (byte for byte), rewards, terminations, truncations and infos, for the same seeds and actions, with
``SyncVectorEnv``'s default next-step autoreset. ``tests/test_fast_carracing_vector.py`` checks it against
``SyncVectorEnv`` over N single envs, and ``bench/carracing_speed.py`` times it against ``SyncVectorEnv`` and
EnvPool's batched mode.

Build it with ``gym.make_vec("FastCarRacing-v3", num_envs=N)`` (the registration's ``vector_entry_point``; add
``vectorization_mode="sync"`` for Gymnasium's ``SyncVectorEnv`` instead) or ``FastCarRacingVector(N)``. See the
class docstring for where the time goes.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import error, logger
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.fast_carracing import FastCarRacing

# FastCarRacing's working buffers and caches that hold nothing from one frame to the next (each render overwrites
# what it reads) or only what every car would compute alike: the band and the x-shrunk window rows with their
# shrink schedule, the view and dashboard scratch arrays, the reward texts. Shared by the N cars of a vector env,
# which render one after another.
_SHARED = ("_band", "_shrink", "_view", "_values", "_texts")


class _Car(FastCarRacing):
    """A ``FastCarRacing`` whose frame-to-frame scratch (``_SHARED``) is the first car's, so that N cars keep one
    working set in cache instead of N."""

    def __init__(self, first: _Car | None, **kwargs):
        super().__init__(**kwargs)
        for name in _SHARED:
            if name not in self.__dict__:
                raise AttributeError(f"FastCarRacing has no attribute {name} to share")
            if first is not None:
                setattr(self, name, getattr(first, name))


def _rows(infos: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    """Vector infos (arrays over all envs, nested dicts alike) cut down to the rows of ``ids``, in that order."""
    return {key: _rows(value, ids) if isinstance(value, dict) else value[ids] for key, value in infos.items()}


class FastCarRacingVector(VectorEnv):
    """``num_envs`` ``FastCarRacing`` envs behind Gymnasium's ``VectorEnv`` API, with next-step autoreset.

    Equivalent per env to ``SyncVectorEnv`` over ``gym.make("FastCarRacing-v3")`` (``TimeLimit`` of
    ``max_episode_steps``, ``OrderEnforcing``, ``PassiveEnvChecker``), with less work around the cars:

    - no wrapper stack per env: the time limit, the reset-before-step check and autoreset are done here, on
      arrays for all envs;
    - each car's frame goes into its row of one preallocated (N, 96, 96, 3) array (no stacking of N frames), and
      the per-step results are arrays filled in place (``copy=True``, the default, returns copies as
      ``SyncVectorEnv`` does);
    - the cars render one after another into one shared set of working buffers (``_SHARED``: the 200 kB band the
      kernels draw in, the x-shrunk window rows, scratch arrays and the reward-text cache), not N sets, so the
      renderer's working set stays in cache.

    ``reset(seed=...)`` takes an int (env i gets seed + i), a list of N seeds or None, and
    ``options={"reset_mask": mask}`` resets only the envs ``mask`` selects, as ``SyncVectorEnv`` does. Keyword
    arguments other than these go to each ``FastCarRacing`` (``continuous``, ``domain_randomize``,
    ``lap_complete_percent``, ``render_mode``, ``verbose``). ``envs`` holds the cars.
    """

    def __init__(self, num_envs: int, max_episode_steps: int | None = 1000, copy: bool = True, **kwargs: Any):
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        first = _Car(None, **kwargs)
        self.envs: list[FastCarRacing] = [first] + [_Car(first, **kwargs) for _ in range(num_envs - 1)]
        self.num_envs = num_envs
        self.max_episode_steps = max_episode_steps
        self.copy = copy
        self.metadata = dict(first.metadata, autoreset_mode=AutoresetMode.NEXT_STEP)
        self.render_mode = first.render_mode
        self.single_observation_space = first.observation_space
        self.single_action_space = first.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        self._observations = np.zeros(self.observation_space.shape, self.observation_space.dtype)
        self._rewards = np.zeros(num_envs, np.float64)
        self._terminations = np.zeros(num_envs, np.bool_)
        self._truncations = np.zeros(num_envs, np.bool_)
        self._elapsed = np.zeros(num_envs, np.int64)  # steps since each env's last reset
        self._autoreset = np.zeros(num_envs, np.bool_)  # envs whose episode ended on the last step
        self._was_reset = np.zeros(num_envs, np.bool_)  # envs reset at least once (step needs all)

    @property
    def np_random_seed(self) -> tuple[int, ...]:
        """Each env's seed (-1 if its generator was set directly)."""
        return tuple(env.np_random_seed for env in self.envs)

    @property
    def np_random(self) -> tuple[np.random.Generator, ...]:
        """Each env's random generator."""
        return tuple(env.np_random for env in self.envs)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env (or those ``options["reset_mask"]`` selects) and return the batched observations."""
        if seed is None:
            seed = [None] * self.num_envs
        elif isinstance(seed, int):
            seed = [seed + i for i in range(self.num_envs)]
        if len(seed) != self.num_envs:
            raise ValueError(f"If seeds are passed as a list the length must match num_envs={self.num_envs} "
                             f"but got length={len(seed)}.")
        mask = np.ones(self.num_envs, np.bool_)
        if options is not None and "reset_mask" in options:
            options = dict(options)
            mask = options.pop("reset_mask")
            if not isinstance(mask, np.ndarray) or mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise TypeError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), got {mask!r}")
            if not mask.any():
                raise ValueError("options['reset_mask'] selects no env")
        infos: dict[str, Any] = {}
        for i in np.flatnonzero(mask):
            self._observations[i], info = self.envs[i].reset(seed=seed[i], options=options)
            if info:
                infos = self._add_info(infos, info, i)
        self._terminations[mask] = False
        self._truncations[mask] = False
        self._autoreset[mask] = False
        self._elapsed[mask] = 0
        self._was_reset[mask] = True
        return (self._observations.copy() if self.copy else self._observations), infos

    def step(
        self, actions: np.ndarray, env_id: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env with its row of ``actions``; an env whose episode ended on the previous step is reset
        instead (reward 0, not terminated or truncated), as ``SyncVectorEnv``'s next-step autoreset does.

        ``env_id`` (EnvPool's keyword for the same thing): step only these envs, ``actions`` holding one row for
        each, in that order; the results are theirs, in that order (always copies), and the other envs keep
        their state and their count of steps towards the time limit. A player of episodes in lockstep steps
        only those still running this way."""
        if not self._was_reset.all():
            raise error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        ids = self._env_ids(env_id, len(actions))
        obs, autoreset = self._observations, self._autoreset.tolist()
        infos: dict[str, Any] = {}
        for row, i in enumerate(ids):
            if autoreset[i]:
                obs[i], info = self.envs[i].reset()
                self._rewards[i], self._terminations[i] = 0.0, False
            else:
                obs[i], self._rewards[i], self._terminations[i], _, info = self.envs[i].step(actions[row])
            if info:
                infos = self._add_info(infos, info, i)
        self._elapsed[ids] = np.where(self._autoreset[ids], 0, self._elapsed[ids] + 1)
        if self.max_episode_steps is None:
            self._truncations[ids] = False
        else:
            self._truncations[ids] = self._elapsed[ids] >= self.max_episode_steps
        self._autoreset[ids] = self._terminations[ids] | self._truncations[ids]
        if env_id is not None:
            return obs[ids], self._rewards[ids], self._terminations[ids], self._truncations[ids], _rows(infos, ids)
        if self.copy:
            return obs.copy(), self._rewards.copy(), self._terminations.copy(), self._truncations.copy(), infos
        return obs, self._rewards, self._terminations, self._truncations, infos

    def _env_ids(self, env_id: np.ndarray | None, rows: int) -> list[int]:
        """The envs a step drives, checked against the number of action rows given for them."""
        if env_id is None:
            ids = list(range(self.num_envs))
        else:
            ids = np.asarray(env_id).reshape(-1).tolist()
            if not all(isinstance(i, int) and 0 <= i < self.num_envs for i in ids) or len(set(ids)) != len(ids):
                raise ValueError(f"env_id must be distinct ints in [0, {self.num_envs}), got {env_id!r}")
        if rows != len(ids):
            raise ValueError(f"{rows} action rows for {len(ids)} envs: pass one row per env stepped")
        return ids

    def render(self) -> tuple[Any, ...] | None:
        """Each env's ``render()`` in the ``render_mode`` given to the constructor (None without one)."""
        if self.render_mode is None:
            logger.warn("FastCarRacingVector.render() needs a render_mode, e.g. render_mode='rgb_array'")
            return None
        return tuple(env.render() for env in self.envs)

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call each env's method ``name`` (or read its attribute ``name``, if not callable)."""
        results = []
        for env in self.envs:
            value = getattr(env, name)
            results.append(value(*args, **kwargs) if callable(value) else value)
        return tuple(results)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Each env's attribute ``name``."""
        return tuple(getattr(env, name) for env in self.envs)

    def close_extras(self, **kwargs: Any) -> None:
        for env in self.envs:
            env.close()
