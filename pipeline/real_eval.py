"""C scored on real episodes, in lockstep: many envs side by side, one batched model call per step.

Each episode's z-sampling noise comes from its own generator seeded by the episode seed. Stochastic cores
(vsg, svsg) draw from torch's generator, which is seeded from the batch's episode seeds: a batch of
(parameters, seeds) always plays out the same, whatever process plays it.
"""
from __future__ import annotations

import numpy as np
import torch

from envs.lockstep import Lockstep
from models.controller import batched
from models.vae import sample_z
from pipeline.contract.seeding import batch_seed
from pipeline.encoder_precision import FP32, Precision
from pipeline.world_model import WorldModel, controller_actions


class RealEvaluator:
    """Plays batches of real episodes side by side (``envs.lockstep``: CarRacing's cars as one vector env); keeps
    its envs between calls. ``precision``: V's encoder's (``pipeline.encoder_precision``; fp32 is V as trained)."""

    def __init__(self, world: WorldModel, max_steps: int, precision: Precision = FP32):
        self.world, self.max_steps = world, max_steps
        self.lockstep = Lockstep(world.source, max_steps)
        self.encode = precision.encoder(world.vae)  # uint8 frames (N, 64, 64, 3) → mu, logvar (N, Z)

    def play(self, params: np.ndarray, seeds: list[int], patience: int = 0) -> tuple[np.ndarray, int]:
        """params (N, P) one controller per episode, seeds (N,) → returns (N,), env steps taken.

        With ``patience`` > 0 (training fitness only, never a score), an episode that has earned no positive
        reward for ``patience`` steps in a row is stopped, and each step it had left is charged the reward of
        its last step (CarRacing: the −0.1 every frame costs), as if it had earned nothing more: the return
        is the one the episode would get if it never found the track again, at a fraction of the steps."""
        limit = self.world.source.max_envs_per_process or len(seeds)
        if len(seeds) <= limit:
            return self._play(params, seeds, patience)
        parts = [self._play(params[s: s + limit], seeds[s: s + limit], patience) for s in range(0, len(seeds), limit)]
        return np.concatenate([r for r, _ in parts]), sum(n for _, n in parts)

    @torch.no_grad()
    def _play(self, params: np.ndarray, seeds: list[int], patience: int = 0) -> tuple[np.ndarray, int]:
        w = self.world
        n = len(seeds)
        torch.manual_seed(batch_seed(seeds))
        obs = self.lockstep.reset(seeds)
        noise = [np.random.default_rng(int(s)) for s in seeds]
        params_t = torch.as_tensor(params, dtype=torch.float32)
        state = w.mdnrnn.initial_state(n)
        alive = np.ones(n, dtype=bool)
        returns = np.zeros(n)
        played = np.zeros(n, dtype=np.int64)  # steps of each episode
        quiet = np.zeros(n, dtype=np.int64)  # steps since each episode last earned a positive reward
        frames = np.stack([w.source.preprocess(o) for o in obs])
        while alive.any():
            mu, logvar = self.encode(frames)
            eps = torch.from_numpy(np.stack([g.standard_normal(mu.shape[1], dtype=np.float32) for g in noise]))
            z = sample_z(mu, logvar, eps)
            out = batched(params_t, torch.cat([z, w.mdnrnn.controller_features(state)], dim=1), w.controller_out)
            actions = controller_actions(w.source, out.numpy())
            running = np.flatnonzero(alive)
            obs, rewards, terminated, truncated = zip(*self.lockstep.step(running, [actions[i] for i in running]))
            for i, ob in zip(running, obs):
                frames[i] = w.source.preprocess(ob)
            rewards = np.array(rewards, dtype=np.float64)
            returns[running] += rewards
            played[running] += 1
            quiet[running] = np.where(rewards > 0, 0, quiet[running] + 1)
            alive[running] = ~(np.array(terminated) | np.array(truncated))
            if patience:
                gave_up = alive[running] & (quiet[running] >= patience)
                stopped = running[gave_up]
                returns[stopped] += rewards[gave_up] * (self.max_steps - played[stopped])
                alive[stopped] = False
            state = w.mdnrnn.advance(z, torch.from_numpy(w.source.encode_actions(w.source.stored_actions(actions))), state)
        return returns, int(played.sum())
