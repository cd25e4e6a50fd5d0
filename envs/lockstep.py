"""Several episodes of one source played side by side by one process, each stepped only while it runs.

Stage 04's ``RealEvaluator`` plays its episodes this way, V, M and C acting for all of them in one batched call per
step. (Stage 01's workers play one episode at a time: with no batched model call to share, a single env is
fastest; ``bench/bench.py`` measures both.) Where the source has a vector env
(``EnvSource.make_vector``; CarRacing's is ``FastCarRacingVector``, whose cars render through one shared set of
working buffers), the episodes are its envs, and a step drives only the running ones (EnvPool's ``env_id``).
Elsewhere they are single envs from ``EnvSource.make``. Either way, episode i is exactly the episode
``source.make(max_steps)`` plays from the same seed with the same actions.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from envs.base import EnvSource

# One env's step: observation, reward, terminated, truncated.
Step = tuple[Any, float, bool, bool]


class Lockstep:
    """Up to any number of envs of ``source`` whose episodes end after ``max_steps`` steps, kept between calls
    (made when first needed, and made again, more of them, when a call needs more)."""

    def __init__(self, source: EnvSource, max_steps: int):
        self.source, self.max_steps = source, max_steps
        self.vector = None  # the source's vector env, where it has one
        self.envs: list = []  # otherwise, single envs

    @property
    def capacity(self) -> int:
        return self.vector.num_envs if self.vector is not None else len(self.envs)

    def _grow(self, n: int) -> None:
        if n <= self.capacity:
            return
        if self.envs:
            self.envs += [self.source.make(self.max_steps) for _ in range(n - len(self.envs))]
            return
        if self.vector is not None:
            self.vector.close()
        self.vector = self.source.make_vector(n, self.max_steps)
        if self.vector is None:
            self.envs = [self.source.make(self.max_steps) for _ in range(n)]
        else:
            self.vector.reset()  # every env reset once, as a step needs (each call seeds the episodes it starts)

    def reset(self, seeds: Sequence[int]) -> list:
        """Start one episode per seed, in envs 0 … len(seeds) − 1; their first observations."""
        n = len(seeds)
        self._grow(n)
        if self.vector is None:
            return [env.reset(seed=int(seed))[0] for env, seed in zip(self.envs, seeds)]
        mask = np.arange(self.vector.num_envs) < n
        full = [int(s) for s in seeds] + [None] * (self.vector.num_envs - n)
        return list(self.vector.reset(seed=full, options={"reset_mask": mask})[0][:n])

    def step(self, ids: Sequence[int], actions: Sequence) -> list[Step]:
        """Step the episodes ``ids`` (all running) with ``actions``, one each in that order; their results."""
        if self.vector is None:
            return [self.envs[i].step(action)[:4] for i, action in zip(ids, actions)]
        obs, rewards, terminated, truncated, _ = self.vector.step(np.asarray(actions), env_id=np.asarray(ids))
        return [(o, float(r), bool(te), bool(tr)) for o, r, te, tr in zip(obs, rewards, terminated, truncated)]

    def close(self) -> None:
        for env in ([self.vector] if self.vector is not None else self.envs):
            env.close()
        self.vector, self.envs = None, []
