"""C trained by PPO instead of CMA-ES: ``04_train_controller.py --algo ppo``.

PPO is Stable-Baselines3's (``stable_baselines3.PPO``, an MLP policy and value function of two 64-unit layers,
its defaults), not written here. What is ours is the environment it learns in: ``FeatureEnv``, the real env as
C sees it. Each observation is C's usual input [z, h]: V's sample of the frame's latent and M's state after
reading the previous z and action; each action is a point of [-1, 1]^A mapped by the source as C's outputs
are (CarRacing: steering, gas, brake), or one of a discrete action set.

Episodes of env ``i`` play from the TRIALS seeds of index ``i`` (``pipeline.contract.seeding``); the policy kept is
scored every ``--eval-every`` iterations on SELECTION seeds, and ``--evaluate N`` scores it on the same
EVALUATE seeds as a CMA-ES controller, so the two are compared on the same episodes.

With ``--in dream`` PPO learns in M's dream instead (``pipeline.dream_vector_env``: ``DREAMS`` dreams stepped as
one batch, M's reward and done); the policy it keeps is still chosen on real selection episodes, and scored on
real EVALUATE episodes.

Files in the run: ``ppo.zip`` (SB3's checkpoint, with the optimiser, written after every iteration: a run
resumes from its last iteration, the episodes in flight starting over) and ``ppo_best.zip`` (the policy that
scored best on the selection episodes: the one ``--evaluate`` scores). Rows go to ``metrics/controller.csv``
as CMA-ES's generations do, one per iteration (``--n-steps`` steps of each of ``--workers`` envs).
"""
from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from data.atomic import write_bytes
from models.vae import sample_z, to_input
from pipeline.contract.errors import UsageError
from pipeline.contract.runconfig import latents_path
from pipeline.contract.seeding import Purpose, episode_seeds
from pipeline.dream_vector_env import DreamVectorEnv, stable_baselines_env
from pipeline.reporting import metrics
from pipeline.world_model import WorldModel

CHECKPOINT, BEST = "ppo.zip", "ppo_best.zip"
DREAMS = 32  # --in dream: dreams PPO steps side by side (an iteration is --n-steps of each)


def sb3():
    try:
        import stable_baselines3
    except ImportError:
        raise UsageError("--algo ppo needs Stable-Baselines3: pip install stable-baselines3 (see "
                         "requirements-extras.txt), or use --algo cmaes") from None
    return stable_baselines3


class FeatureEnv(gym.Env):
    """The real env of ``world.source`` seen through V and M: observations [z, h], C's action space."""

    def __init__(self, world: WorldModel, max_steps: int, seed: int = 0, index: int = 0):
        """Episodes without an explicit reset seed play from ``episode_seeds(seed, TRIALS, index, …)``."""
        self.world, self.env = world, world.source.make(max_steps)
        self.seed_base, self.index, self.episodes = seed, index, 0
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (world.controller_in,), np.float32)
        source = world.source
        self.action_space = (gym.spaces.Discrete(source.action_dim) if source.discrete
                             else gym.spaces.Box(-1.0, 1.0, (source.action_dim,), np.float32))
        self.z = self.state = self.noise = None

    @torch.no_grad()
    def _see(self, obs) -> np.ndarray:
        """A new frame: V's sampled z (noise from the episode's own generator, as ``RealEvaluator`` draws it), and the
        observation [z, h]."""
        frame = torch.from_numpy(np.array(self.world.source.preprocess(obs)[None]))
        mu, logvar = self.world.vae.encode(to_input(frame))
        eps = torch.from_numpy(self.noise.standard_normal(mu.shape, dtype=np.float32))
        self.z = sample_z(mu, logvar, eps)
        features = torch.cat([self.z, self.world.mdnrnn.controller_features(self.state)], dim=1)
        return features[0].numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=seed)
        if seed is None:
            seed = episode_seeds(self.seed_base, Purpose.TRIALS, self.index, self.episodes + 1)[-1]
        self.episodes += 1
        obs, info = self.env.reset(seed=int(seed))
        self.noise = np.random.default_rng(int(seed))
        self.state = self.world.mdnrnn.initial_state(1)
        return self._see(obs), info

    @torch.no_grad()
    def step(self, action):
        source = self.world.source
        env_action = int(action) if source.discrete else source.controller_action(np.asarray(action, np.float32))
        obs, reward, terminated, truncated, info = self.env.step(env_action)
        a = torch.from_numpy(source.encode_actions(source.stored_actions([env_action])))
        self.state = self.world.mdnrnn.advance(self.z, a, self.state)
        return self._see(obs), float(reward), terminated, truncated, info

    def close(self) -> None:
        self.env.close()


def play(model, env: FeatureEnv, seeds: list[int]) -> tuple[np.ndarray, int]:
    """The returns of the deterministic policy ``model`` over episodes reset with ``seeds``, and the steps taken."""
    returns, steps = [], 0
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total, steps = total + reward, steps + 1
            done = terminated or truncated
        returns.append(total)
    return np.asarray(returns), steps


def train(args: argparse.Namespace, world: WorldModel, open_log, progress_write) -> None:
    """PPO for ``args.timesteps`` env steps in total (a resumed run continues to that total). ``open_log(n)``:
    the metrics log, keeping the rows of the first n iterations."""
    base = sb3()
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecMonitor

    run: Path = args.run
    in_dream = getattr(args, "train_in", "env") == "dream"
    n_envs = DREAMS if in_dream else args.workers
    per_iteration = args.n_steps * n_envs
    fingerprint = world.fingerprint()
    model = load(run / CHECKPOINT, fingerprint) if (run / CHECKPOINT).exists() else None
    start = model.num_timesteps if model is not None else 0
    log = open_log(start // per_iteration)
    # Env i's episode seeds: a stream of its own, and a new one each time the run resumes (none played twice).
    first = start // per_iteration * n_envs
    if in_dream:
        dreams = DreamVectorEnv(world, latents_path(run), n_envs, args.steps, args.temperature, seed=args.seed + first,
                                warmup=args.warmup, reward_penalty=args.reward_penalty)
        envs_ = VecMonitor(stable_baselines_env(dreams))
    else:
        # Emulators that allow one instance per process (stable-retro) get a process per env; the scorer below has
        # this one's.
        vec = SubprocVecEnv if world.source.max_envs_per_process else DummyVecEnv
        envs_ = vec([lambda i=i: Monitor(FeatureEnv(world, args.steps, args.seed, first + i)) for i in range(n_envs)])
    scorer = FeatureEnv(world, args.steps, args.seed)
    if model is not None:
        model.set_env(envs_)
        print(f"resuming from {run / CHECKPOINT}: {model.num_timesteps:,} steps")
    else:
        model = base.PPO("MlpPolicy", envs_, n_steps=args.n_steps, batch_size=min(64, per_iteration), seed=args.seed,
                         device="cpu", verbose=0)
    kept = [row["eval_mean"] for row in metrics.read(log.path) if np.isfinite(row["eval_mean"])]
    best = max(kept, default=-np.inf)  # the best selection score of the iterations resumed from

    class Rows(BaseCallback):
        """One metrics row per iteration; the checkpoint; every --eval-every iterations, the selection score."""

        def _on_training_start(self) -> None:
            self.start, self.finished = time.monotonic(), []

        def _on_step(self) -> bool:
            self.finished += [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
            return True

        def _on_rollout_end(self) -> None:
            nonlocal best
            iteration = self.model.num_timesteps // per_iteration
            row, finished = {"generation": iteration, "env_steps": 0 if in_dream else per_iteration}, self.finished
            if in_dream:
                row["dream_steps"] = per_iteration
            if finished:
                row.update(best=max(finished), mean=float(np.mean(finished)), worst=min(finished))
            shown = ""
            if iteration % args.eval_every == 0 or self.model.num_timesteps >= args.timesteps:
                seeds = episode_seeds(args.seed, Purpose.SELECTION, iteration, args.eval_episodes)
                scores, steps = play(self.model, scorer, seeds)
                row.update(eval_mean=scores.mean(), eval_std=scores.std(), env_steps=row["env_steps"] + steps)
                if scores.mean() > best:
                    best = float(scores.mean())
                    save(self.model, run / BEST, fingerprint)
                    verdict = "kept: the best so far"
                else:
                    verdict = f"the kept one scored {best:.1f}"
                shown = f", policy scored {scores.mean():.1f} ± {scores.std():.1f} on selection episodes ({verdict})"
            row["seconds"] = time.monotonic() - self.start
            log.write(**row)
            save(self.model, run / CHECKPOINT, fingerprint)
            if not (run / BEST).exists():
                save(self.model, run / BEST, fingerprint)
            returns = f"episodes {row['mean']:.1f} (best {row['best']:.1f})" if finished else "no episode ended"
            progress_write(f"iteration {iteration}: {self.model.num_timesteps:,} steps, {returns}{shown}")
            self.start, self.finished = time.monotonic(), []

    remaining = args.timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(total_timesteps=remaining, callback=Rows(), reset_num_timesteps=False)
    envs_.close()
    scorer.close()
    print(f"PPO trained for {model.num_timesteps:,} env steps: {run / CHECKPOINT} (best-scoring policy: {run / BEST}, "
          f"selection score {best:.1f})")


def actor(model, source):
    """A PPO policy as one of ``pipeline.dream_env``'s actors: it reads [z, h] and acts for every episode of a batch,
    deterministically, through the source's own mapping (as ``FeatureEnv`` does)."""

    def act(t: int, z: torch.Tensor, features: torch.Tensor) -> list:
        actions, _ = model.predict(torch.cat([z, features], dim=1).float().cpu().numpy(), deterministic=True)
        if source.discrete:
            return [int(a) for a in actions]
        return [source.controller_action(np.asarray(a, np.float32)) for a in actions]

    return act


def save(model, path: Path, world: str) -> None:
    """SB3's zip, written through the project's atomic path (complete under its name, or the previous version),
    recording the fingerprint ``world`` of the V and M the policy learnt on (``WorldModel.fingerprint``)."""
    model.world_fingerprint = world  # SB3 saves a model's plain attributes, and load restores them
    buffer = io.BytesIO()
    model.save(buffer)
    write_bytes(path, buffer.getvalue())


def load(path: Path, world: str | None = None):
    """The PPO model saved at ``path``; a damaged file, or one that learnt on other V and M than ``world``, is
    one line (a zip saved before models recorded their world cannot tell, and is taken as it is)."""
    try:
        model = sb3().PPO.load(path, device="cpu")
    except UsageError:
        raise
    except Exception:  # SB3 fails in many ways on a damaged zip (BadZipFile, EOFError, KeyError, …)
        raise UsageError(f"{path} is corrupted or not a Stable-Baselines3 PPO model: delete it and run "
                         "04_train_controller.py --algo ppo again") from None
    made_on = getattr(model, "world_fingerprint", None)
    if world is not None and made_on is not None and made_on != world:
        raise UsageError(f"{path} learnt on another V and M than this run's (retrained since?): delete {CHECKPOINT} "
                         f"and {BEST} and run 04_train_controller.py --algo ppo again, or restore the vae.pt and "
                         "mdnrnn.pt it learnt on")
    return model


def load_best(run: Path, world: WorldModel | None = None):
    """The kept PPO policy of ``run`` (checked against ``world``'s V and M when given)."""
    path = run / BEST
    if not path.exists():
        raise UsageError(f"{path} is missing: train C with 04_train_controller.py --algo ppo first")
    return load(path, world.fingerprint() if world is not None else None)


def evaluate(args: argparse.Namespace, world: WorldModel, seeds: list[int]) -> np.ndarray:
    """``--evaluate N`` for a PPO run: the kept policy on EVALUATE seeds, the same as a CMA-ES controller's."""
    model = load_best(args.run, world)
    env = FeatureEnv(world, args.steps, args.seed)
    try:
        return play(model, env, seeds)[0]
    finally:
        env.close()
