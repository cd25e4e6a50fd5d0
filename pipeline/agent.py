"""V, M and C playing real episodes: many envs in lockstep, one batched model call per step.

Each episode's z-sampling noise comes from its own generator seeded by the episode seed. Stochastic cores
(vsg, svsg) draw from torch's generator, which is seeded from the batch's episode seeds: a batch of
(parameters, seeds) always plays out the same, whatever process plays it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import envs
from envs.base import EnvSource
from envs.carracing import CarRacing
from envs.lockstep import Lockstep
from envs.shapeherd import ShapeHerd
from models.controller import batched, num_params
from models.mdnrnn import MDNRNN
from models.vae import ConvVAE, sample_z, to_input
from pipeline import checkpoint
from pipeline.errors import UsageError
from pipeline.seeding import batch_seed


@dataclass
class WorldModel:
    """Trained V and M of a run, plus the env source they were trained on."""

    source: envs.EnvSource
    vae: ConvVAE
    mdnrnn: MDNRNN
    vae_fingerprint: str | None = None  # the weights hash of V (checkpoint.weights_hash); None: not checked

    @classmethod
    def load(cls, run: Path, env: str, state: str | None = None) -> WorldModel:
        """V and M of ``run``; a UsageError if M was not trained on this V's z or on this env's actions."""
        vae_state = checkpoint.load(run / "vae.pt", "02_train_vae.py")
        m_state = checkpoint.load(run / "mdnrnn.pt", "03_train_mdnrnn.py")
        source = envs.get(env, state)
        z_v, z_m = vae_state["config"]["z_dim"], m_state["config"]["z_dim"]
        if z_v != z_m:
            raise UsageError(f"{run / 'mdnrnn.pt'} reads z of size {z_m} but {run / 'vae.pt'} encodes to {z_v}: "
                             "run 03_train_mdnrnn.py again on this V (or restore the vae.pt M was trained on)")
        if m_state["config"]["action_dim"] != source.action_dim:
            raise UsageError(f"{run / 'mdnrnn.pt'} was trained on {m_state['config']['action_dim']} action inputs but "
                             f"--env {env} has {source.action_dim}: pass the --env it was trained on, or another --run")
        fingerprint = checkpoint.weights_hash(vae_state["model"])
        if m_state.get("vae_fingerprint", fingerprint) != fingerprint:
            raise UsageError(f"{run / 'mdnrnn.pt'} was trained on the codes of another V than {run / 'vae.pt'} "
                             "(retrained since?): run 03_train_mdnrnn.py again on this V")
        return cls(source, ConvVAE.from_state(vae_state).eval(), MDNRNN.from_state(m_state).eval(), fingerprint)

    def fingerprint(self) -> str:
        """A digest of V's and M's weights: what a controller evolved on them is tied to."""
        return checkpoint.weights_hash({**{f"vae.{k}": v for k, v in self.vae.state_dict().items()},
                                        **{f"mdnrnn.{k}": v for k, v in self.mdnrnn.state_dict().items()}})

    @property
    def controller_in(self) -> int:
        return self.vae.z_dim + self.mdnrnn.state_size

    @property
    def controller_out(self) -> int:
        return self.source.action_dim

    @property
    def num_params(self) -> int:
        return num_params(self.controller_in, self.controller_out)


# Sources whose ``controller_action`` computes each action component from C's outputs by elementwise numpy
# operations only, indexing the outputs by component: given the outputs transposed, (A, N), it maps all N
# rows in one call, value for value.
_COLUMNWISE = (CarRacing.controller_action, ShapeHerd.controller_action)


def controller_actions(source: envs.EnvSource, out: np.ndarray) -> np.ndarray | list:
    """C's outputs for N episodes (N, A) → their N env actions, each exactly ``source.controller_action`` of its
    row: one vectorised call for CarRacing and ShapeHerd ((N, A) float32) and discrete sources' argmax (a list
    of ints), one call per row otherwise."""
    mapping = type(source).controller_action
    if mapping in _COLUMNWISE:
        return np.ascontiguousarray(source.controller_action(out.T).T)
    if source.discrete and mapping is EnvSource.controller_action:
        return out.argmax(axis=1).tolist()
    return [source.controller_action(o) for o in out]


class Player:
    """Plays batches of real episodes side by side (``envs.lockstep``: CarRacing's cars as one vector env); keeps
    its envs between calls."""

    def __init__(self, world: WorldModel, max_steps: int):
        self.world, self.max_steps = world, max_steps
        self.lockstep = Lockstep(world.source, max_steps)

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
            mu, logvar = w.vae.encode(to_input(torch.from_numpy(frames)))
            eps = torch.from_numpy(np.stack([g.standard_normal(mu.shape[1], dtype=np.float32) for g in noise]))
            z = sample_z(mu, logvar, eps)
            out = batched(params_t, torch.cat([z, w.mdnrnn.controller_features(state)], dim=1), w.controller_out)
            actions = controller_actions(w.source, out.numpy())
            running = np.flatnonzero(alive)
            results = self.lockstep.step(running, [actions[i] for i in running])
            for i, (ob, reward, terminated, truncated) in zip(running, results):
                frames[i] = w.source.preprocess(ob)
                returns[i] += reward
                played[i] += 1
                quiet[i] = 0 if reward > 0 else quiet[i] + 1
                alive[i] = not (terminated or truncated)
                if alive[i] and patience and quiet[i] >= patience:
                    returns[i] += float(reward) * (self.max_steps - played[i])
                    alive[i] = False
            _, state = w.mdnrnn.step(z, torch.from_numpy(w.source.encode_actions(w.source.stored_actions(actions))), state)
        return returns, int(played.sum())
