"""M's dream as a Gymnasium vector env: N dreams stepped together, for any RL library to learn in.

    from pipeline.dream_vector_env import DreamVectorEnv
    env = DreamVectorEnv.from_run("results/carracing", num_envs=64, max_steps=1000)

Each observation is C's input [z, h] (V's latent and M's state features); each action is a point of C's action
space (a Box [-1, 1]^A mapped by the source as C's outputs are, or a Discrete action); each reward is M's
reward head (less ``reward_penalty`` times the spread of its reward heads, where M has several); an episode
terminates when M's done probability passes 0.5 and is truncated after ``max_steps`` steps.

Episodes reset in the same step they end (Gymnasium's ``AutoresetMode.SAME_STEP``): the observation returned is
the new episode's first, and the last one of the ended episode is in ``info["final_obs"]``. Episode ``k`` of env
``i`` starts from the real frame ``StartFrames`` draws for ``episode_seeds(seed, DREAMS, i, ...)[k]``.

Until its first episode ends, a dream of this env makes exactly the transitions ``pipeline.dream_env.dream`` makes
for the same starts, actions and seed (the test checks it): same z_0, same M steps, same generator draws.
"""
from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import Purpose, batch_seed, episode_seeds
from pipeline.dream_env import DONE_THRESHOLD, StartFrames, Starts, begin, reward_of, step
from pipeline.world_model import WorldModel, controller_actions


def controller_action_space(world: WorldModel) -> gym.Space:
    """C's action space: Discrete for a discrete source, else C's raw outputs, a Box [-1, 1]^A."""
    source = world.source
    if source.discrete:
        return gym.spaces.Discrete(source.action_dim)
    return gym.spaces.Box(-1.0, 1.0, (source.action_dim,), np.float32)


def _batch_dims(m) -> list[int]:
    """For each tensor of M's state, the dimension that indexes the batch (the LSTM's is 1, the others' 0)."""
    one, two = m.initial_state(1), m.initial_state(2)
    return [next(d for d, (a, b) in enumerate(zip(s1.shape, s2.shape)) if a != b) for s1, s2 in zip(one, two)]


class DreamVectorEnv(VectorEnv):
    """``num_envs`` dreams of one run's M, stepped as one batch (see the module's docstring)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, world: WorldModel, latents: Path, num_envs: int, max_steps: int, temperature: float = 1.15,
                 seed: int = 0, warmup: int = 0, reward_penalty: float = 0.0):
        if num_envs < 1:
            raise UsageError(f"num_envs must be at least 1, not {num_envs}")
        self.world, self.num_envs, self.max_steps = world, num_envs, max_steps
        self.temperature, self.reward_penalty, self.base_seed = temperature, reward_penalty, seed
        self.m = world.mdnrnn.eval()
        self.starts = StartFrames(latents, warmup, world.vae_fingerprint)
        self.single_observation_space = gym.spaces.Box(-np.inf, np.inf, (world.controller_in,), np.float32)
        self.single_action_space = controller_action_space(world)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        self._dims = _batch_dims(self.m)
        self.episodes = np.zeros(num_envs, dtype=np.int64)  # episodes begun by each env
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.z = self.state = self.generator = None
        self.observed = True
        self.torch_state = torch.random.get_rng_state()  # torch's own stream, which stochastic cores draw from

    @classmethod
    def from_run(cls, run: str | Path, num_envs: int, max_steps: int, **options) -> DreamVectorEnv:
        """The dreams of a trained run folder (its vae.pt, mdnrnn.pt and latents.h5)."""
        from pipeline.contract.runconfig import latents_path, load_config

        run = Path(run)
        config = load_config(run).get("mdnrnn") or {}
        world = WorldModel.load(run, config.get("env", "carracing"), config.get("state"))
        return cls(world, latents_path(run), num_envs, max_steps, **options)

    # -- starts ----------------------------------------------------------------------------------
    def _start_seeds(self, envs: np.ndarray) -> list[int]:
        """The start seed of each env's next episode (its own stream, indexed by how many it has begun)."""
        return [episode_seeds(self.base_seed, Purpose.DREAMS, int(i), int(self.episodes[i]) + 1)[-1] for i in envs]

    def _observe(self) -> np.ndarray:
        features = self.m.controller_features(self.state)
        return torch.cat([self.z, features], dim=1).float().numpy()

    @torch.no_grad()
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Every env begins an episode. ``seed`` restarts every stream (the starts and M's draws)."""
        if seed is not None:
            self.base_seed = int(seed)
            self.episodes[:] = 0
        return self.reset_with_starts(self.starts.draw(self._start_seeds(np.arange(self.num_envs))))

    @torch.no_grad()
    def reset_with_starts(self, starts: Starts, generator_seed: int | None = None):
        """Every env begins an episode from the given starts (one per env); M's sampling generator is seeded with
        ``generator_seed`` (default: from the starts' episode seeds)."""
        if generator_seed is None:
            generator_seed = batch_seed(self._start_seeds(np.arange(self.num_envs)), self.num_envs)
        self.generator = torch.Generator().manual_seed(int(generator_seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(generator_seed))
            self.z, self.state = begin(self.m, starts, torch.device("cpu"))
            self.torch_state = torch.random.get_rng_state()
        self.episodes += 1
        self.t[:] = 0
        self.observed = True
        return self._observe(), {}

    @torch.no_grad()
    def _restart(self, envs: np.ndarray) -> None:
        """Begin a new episode in ``envs`` (their rows of z and M's state), the others keep theirs."""
        starts = self.starts.draw(self._start_seeds(envs))
        z0, fresh = begin(self.m, starts, torch.device("cpu"))
        rows = torch.from_numpy(envs)
        self.z[rows] = z0
        for tensor, new, dim in zip(self.state, fresh, self._dims):
            tensor.index_copy_(dim, rows, new)
        self.episodes[envs] += 1
        self.t[envs] = 0

    # -- stepping --------------------------------------------------------------------------------
    def env_actions(self, actions) -> np.ndarray | list:
        """C's actions (N, A) in [-1, 1], or N discrete actions → the env's actions, mapped as C's outputs are."""
        if self.world.source.discrete:
            return [int(a) for a in np.asarray(actions).reshape(-1)]
        return controller_actions(self.world.source, np.asarray(actions, dtype=np.float32))

    @torch.no_grad()
    def step(self, actions):
        if self.z is None:
            raise UsageError("step() before reset(): call reset() first")
        with torch.random.fork_rng(devices=[]):  # the stream of stochastic cores is this env's, not the caller's
            torch.random.set_rng_state(self.torch_state)
            out, z_next, self.state = step(self.m, self.world.source, self.z, self.state, self.env_actions(actions),
                                           self.temperature, self.generator, observed=self.observed)
            self.torch_state = torch.random.get_rng_state()
        self.observed = False
        self.z = z_next
        self.t += 1
        reward = reward_of(out, self.reward_penalty).double().numpy()
        terminated = (torch.sigmoid(out.done_logit) > DONE_THRESHOLD).numpy()
        truncated = ~terminated & (self.t >= self.max_steps)
        obs = self._observe()
        infos: dict = {}
        ended = np.flatnonzero(terminated | truncated)
        if len(ended):
            final = np.full(self.num_envs, None, dtype=object)
            for i in ended:
                final[i] = obs[i].copy()
            infos = {"final_obs": final, "_final_obs": terminated | truncated}
            self._restart(ended)
            obs = self._observe()
        return obs, reward, terminated, truncated, infos


def stable_baselines_env(dreams: DreamVectorEnv):
    """An SB3 ``VecEnv`` stepping ``dreams``: ended episodes' last observations in ``terminal_observation``, time
    limits in ``TimeLimit.truncated``, as SB3's own vector envs report them."""
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv

    class DreamVecEnv(VecEnv):
        def __init__(self):
            super().__init__(dreams.num_envs, dreams.single_observation_space, dreams.single_action_space)
            self.dreams, self._actions = dreams, None

        def reset(self):
            return self.dreams.reset()[0]

        def step_async(self, actions) -> None:
            self._actions = actions

        def step_wait(self):
            obs, reward, terminated, truncated, info = self.dreams.step(self._actions)
            infos = [{} for _ in range(self.num_envs)]
            for i in np.flatnonzero(terminated | truncated):
                infos[i] = {"terminal_observation": info["final_obs"][i], "TimeLimit.truncated": bool(truncated[i])}
            return obs, reward.astype(np.float32), terminated | truncated, infos

        def close(self) -> None:
            pass

        def get_attr(self, attr_name, indices=None):
            return [getattr(self.dreams, attr_name)] * len(self._get_indices(indices))

        def set_attr(self, attr_name, value, indices=None) -> None:
            setattr(self.dreams, attr_name, value)

        def env_method(self, method_name, *args, indices=None, **kwargs):
            return [getattr(self.dreams, method_name)(*args, **kwargs) for _ in self._get_indices(indices)]

        def env_is_wrapped(self, wrapper_class, indices=None):
            return [False] * len(self._get_indices(indices))

        def seed(self, seed=None):
            if seed is not None:
                self.dreams.base_seed = int(seed)
            return [seed] * self.num_envs

    return DreamVecEnv()
