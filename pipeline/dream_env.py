"""Dreams: M rolled forward on its own samples, used as an environment (Ha & Schmidhuber 2018, the Doom experiment).

A dream starts from a real frame: z_0 is sampled from the N(mu, sigma²) that V gave that frame (``latents.h5``),
and M starts from its initial state (or, with ``warmup`` W, from the state it reaches reading the W real steps
before that frame). Then, each step t, an *actor* picks the actions from (z_t, C's view of M's state); M reads
[z_t, a_t] and predicts p(z_{t+1}), the reward r_t and the done logit; the episode ends after the step whose
done probability passes 0.5, or after ``steps`` steps; z_{t+1} is sampled at temperature τ. Every episode of a
call runs in one batch (population × trials when evolving C), on the GPU when there is one.

Actors: ``controller_actor`` (C, one parameter row per episode), ``policy_actor`` (the collection policy) and
``scripted_actor`` (a given action sequence, open loop). ``record_real_episode`` plays one real episode with the same
actors, so a real episode and a dream can be driven by the same actions.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

import envs
from models.controller import batched
from models.mdnrnn import MDNRNN, MDNOutput, mixture_mean, sample
from models.vae import ConvVAE, sample_z, to_frames, to_input
from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import batch_seed
from pipeline.world_model import WorldModel, controller_actions

DONE_THRESHOLD = 0.5  # the Doom dream's rule: an episode ends when M's done probability passes 0.5

# (t, z (N, Z), C's features of M's state (N, H)) → N actions in the env's own action space (a list, or an
# array whose rows are the actions).
Actor = Callable[[int, torch.Tensor, torch.Tensor], Sequence]


# -- where dreams start --------------------------------------------------------------------------
@dataclass
class Starts:
    """N starting points: z_0 (N, Z) and the real steps before it, prefix_z (N, W, Z), prefix_actions (N, W, A)
    (A as M reads actions); ``episode`` and ``t`` say which real frame each row starts from."""

    z: np.ndarray
    prefix_z: np.ndarray
    prefix_actions: np.ndarray
    episode: np.ndarray
    t: np.ndarray

    def rows(self, index: np.ndarray) -> Starts:
        return Starts(self.z[index], self.prefix_z[index], self.prefix_actions[index], self.episode[index], self.t[index])


class StartFrames:
    """The real frames of ``latents.h5`` that dreams start from, read lazily (the file can be many GB).

    A start depends only on its seed: the frame is drawn uniformly among every (episode, t) with W ≤ t < T
    (the frame after the last action is left out: it may be terminal), and z_0 and the warm-up latents are
    sampled from the stored mu and logvar with the same generator.
    """

    def __init__(self, path: Path, warmup: int = 0, vae_fingerprint: str | None = None):
        """``vae_fingerprint``: the weights hash of the V that dreams decode with; latents encoded by another V
        (retrained since) are refused."""
        if not path.exists():
            raise UsageError(f"{path} not found: run 03_train_mdnrnn.py first (it encodes every frame into it)")
        self.path, self.warmup = path, warmup
        with self._open() as f:
            if vae_fingerprint is not None and f.attrs.get("vae_fingerprint") != vae_fingerprint:
                raise UsageError(f"{path} was encoded by another V than this run's vae.pt (retrained since?): run "
                                 "03_train_mdnrnn.py again, which re-encodes the frames and retrains M on them")
            try:
                self.keys = list(f.keys())
                lengths = np.array([f[k]["actions"].shape[0] for k in self.keys])
            except (KeyError, OSError):
                raise self._damaged() from None
        # Row i of the pool holds frames t = W … T−1 of episode i: max(0, T − W) of them.
        self.cumulative = np.cumsum(np.maximum(lengths - warmup, 0))
        if not len(self.keys) or self.cumulative[-1] == 0:
            raise UsageError(f"{path} has no episode longer than --warmup {warmup} steps: lower --warmup")

    def _damaged(self) -> UsageError:
        return UsageError(f"{self.path} is truncated or damaged: delete it and run 03_train_mdnrnn.py again")

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.path, "r")
        except OSError:
            raise self._damaged() from None

    def draw(self, seeds: Sequence[int]) -> Starts:
        """One start per seed: z (N, Z), prefix_z (N, W, Z), prefix_actions (N, W, A)."""
        zs, prefix_z, prefix_a, episode, times = [], [], [], [], []
        w = self.warmup
        with self._open() as f:
            for seed in seeds:
                rng = np.random.default_rng(int(seed))
                k = int(rng.integers(self.cumulative[-1]))
                i = int(np.searchsorted(self.cumulative, k, side="right"))
                t = w + k - (int(self.cumulative[i - 1]) if i else 0)
                g = f[self.keys[i]]
                mu, logvar = g["mu"][t - w: t + 1], g["logvar"][t - w: t + 1]
                z = sample_z(mu, logvar, rng.standard_normal(mu.shape, dtype=np.float32))
                zs.append(z[-1])
                prefix_z.append(z[:-1])
                prefix_a.append(g["actions"][t - w: t])
                episode.append(int(g.attrs["id"]))
                times.append(t)
        return Starts(np.stack(zs).astype(np.float32), np.stack(prefix_z).astype(np.float32),
                      np.stack(prefix_a).astype(np.float32), np.array(episode), np.array(times))


# -- one batch of dreams ---------------------------------------------------------------------------
@dataclass
class DreamResult:
    """returns, lengths (N,): reward summed (and steps counted) until done or the cap. When recorded:
    z (T+1, N, Z) the dreamed latents from z_0, rewards and done_prob (T, N), actions T lists of N env actions."""

    returns: np.ndarray
    lengths: np.ndarray
    z: torch.Tensor | None = None
    rewards: np.ndarray | None = None
    done_prob: np.ndarray | None = None

    @property
    def steps(self) -> int:
        """Dream steps that counted (those of episodes still running)."""
        return int(self.lengths.sum())


@torch.no_grad()
def begin(m: MDNRNN, starts: Starts, device: torch.device) -> tuple[torch.Tensor, tuple]:
    """z_0 (N, Z) on ``device`` and M's state after reading the real warm-up steps (its initial state if none)."""
    z0 = torch.from_numpy(starts.z).to(device)
    if starts.prefix_z.shape[1] == 0:
        return z0, m.initial_state(len(z0), device)
    _, state, _ = m(torch.from_numpy(starts.prefix_z).to(device), torch.from_numpy(starts.prefix_actions).to(device))
    return z0, state


@torch.no_grad()
def step(m: MDNRNN, source: envs.EnvSource, z: torch.Tensor, state: tuple, actions: list, temperature: float,
         generator: torch.Generator, observed: bool) -> tuple[MDNOutput, torch.Tensor, tuple]:
    """One dream step of N episodes: z (N, Z) and N env actions → M's predictions (float32), z_{t+1} (N, Z)
    sampled at τ, M's next state. ``observed``: z came from V (a real frame), not from M's own sample."""
    a = torch.from_numpy(source.encode_actions(source.stored_actions(actions))).to(z.device)
    out, state = m.step(z, a, state, dream=not observed)  # cores with a prior/posterior split dream on the prior
    out = out.float()
    return out, sample(out, temperature, generator), state


def reward_of(out: MDNOutput, penalty: float = 0.0) -> torch.Tensor:
    """The reward a dream pays (N,): M's mean reward prediction, less ``penalty`` times the spread of its reward
    heads (a conservative reward: where M's heads disagree, the dream promises less)."""
    return out.reward if penalty == 0 else out.reward - penalty * out.reward_spread()


@torch.no_grad()
def dream(m: MDNRNN, source: envs.EnvSource, z0: torch.Tensor, state: tuple, actor: Actor, steps: int,
          temperature: float, generator: torch.Generator, record: bool = False, until_done: bool = True,
          reward_penalty: float = 0.0) -> DreamResult:
    """Roll N dreams forward together from z_0 (N, Z) and M's ``state``, for at most ``steps`` steps.

    Episodes that ended keep stepping with the rest (the batch keeps its shape) but add no reward or steps;
    the loop stops early once every episode has ended, unless ``until_done`` is False (to compare a whole
    action sequence with reality).
    """
    device, n = z0.device, len(z0)
    alive = torch.ones(n, dtype=torch.bool, device=device)
    returns = torch.zeros(n, dtype=torch.float64, device=device)
    lengths = torch.zeros(n, dtype=torch.long, device=device)
    z = z0
    trace: dict[str, list] = {"z": [z0], "rewards": [], "done_prob": []}
    for t in range(steps):
        actions = actor(t, z, m.controller_features(state))
        # z_0 was observed (encoded from a real frame); every later z is M's own sample.
        out, z, state = step(m, source, z, state, actions, temperature, generator, observed=t == 0)
        done_prob = torch.sigmoid(out.done_logit)
        returns += torch.where(alive, reward_of(out, reward_penalty).double(), 0.0)
        lengths += alive
        alive &= done_prob <= DONE_THRESHOLD
        if record:
            trace["z"].append(z)
            trace["rewards"].append(out.reward.cpu().numpy())
            trace["done_prob"].append(done_prob.cpu().numpy())
        if until_done and not alive.any():
            break
    result = DreamResult(returns.cpu().numpy(), lengths.cpu().numpy())
    if record:
        result.z = torch.stack(trace["z"])
        result.rewards = np.array(trace["rewards"]).reshape(-1, n)
        result.done_prob = np.array(trace["done_prob"]).reshape(-1, n)
    return result


# -- actors ----------------------------------------------------------------------------------------
def controller_actor(world: WorldModel, params: torch.Tensor) -> Actor:
    """C with one parameter row per episode, params (N, P) on the dream's device."""

    def act(t: int, z: torch.Tensor, features: torch.Tensor) -> np.ndarray | list:
        out = batched(params, torch.cat([z, features], dim=1), world.controller_out)
        return controller_actions(world.source, out.cpu().numpy())

    return act


def policy_actor(source: envs.EnvSource, kind: str, n: int, seed: int) -> Actor:
    """The collection policy (``brownian`` or ``random``), one independent copy per episode."""
    policies = [source.exploration_policy(kind, np.random.default_rng([seed, i])) for i in range(n)]

    def act(t: int, z: torch.Tensor, features: torch.Tensor) -> list:
        return [p.act() for p in policies]

    return act


def scripted_actor(actions: Sequence) -> Actor:
    """A given sequence of env actions, the same for every episode (open loop)."""

    def act(t: int, z: torch.Tensor, features: torch.Tensor) -> list:
        return [actions[t]] * len(z)

    return act


# -- dreams as the place C is evolved ---------------------------------------------------------------
@contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """torch's CPU thread count set to ``n`` for the block, then restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DreamEvaluator:
    """Plays controllers in M's dream, every episode of a call in one batch on ``device``.

    The counterpart of ``pipeline.real_eval.RealEvaluator``: ``play(params, seeds)`` has the same shape. A start depends
    only on its seed (``StartFrames``); M's sampling noise comes from one generator per call, seeded by all the
    call's seeds, so a call is reproducible (on the same device and batch layout).
    """

    def __init__(self, world: WorldModel, latents: Path, max_steps: int, temperature: float,
                 device: torch.device, warmup: int = 0, threads: int = 1, reward_penalty: float = 0.0):
        """``threads``: torch's CPU threads while a batch dreams (the results are the same for any number; the
        stage gives the cores its real-env workers leave idle meanwhile). ``reward_penalty``: see ``reward_of``."""
        self.world, self.max_steps, self.temperature, self.device = world, max_steps, temperature, device
        self.threads, self.reward_penalty = threads, reward_penalty
        self.m = copy.deepcopy(world.mdnrnn).to(device).eval()
        self.starts = StartFrames(latents, warmup, world.vae_fingerprint)

    def play_starts(self, params: np.ndarray, starts: Starts, seed: int) -> DreamResult:
        """params (N, P), one controller per start → the batch's ``DreamResult``. ``seed`` seeds M's sampling
        and, on a forked stream that leaves the caller's untouched, the noise of stochastic cores."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), cpu_threads(self.threads):
            torch.manual_seed(seed)
            z0, state = begin(self.m, starts, self.device)
            params_t = torch.as_tensor(params, dtype=torch.float32, device=self.device)
            return dream(self.m, self.world.source, z0, state, controller_actor(self.world, params_t), self.max_steps,
                         self.temperature, torch.Generator(self.device).manual_seed(seed),
                         reward_penalty=self.reward_penalty)

    def play(self, params: np.ndarray, seeds: Sequence[int]) -> tuple[np.ndarray, int]:
        """params (N, P) one controller per episode, seeds (N,) → returns (N,), dream steps taken."""
        result = self.play_starts(params, self.starts.draw(seeds), batch_seed(seeds, len(seeds)))
        return result.returns, result.steps

    def fitness(self, candidates: np.ndarray, seeds: Sequence[int]) -> tuple[np.ndarray, int]:
        """Mean dream return of each candidate (K, P) over the same J starts: K·J episodes in one batch."""
        k, j = len(candidates), len(seeds)
        starts = self.starts.draw(seeds).rows(np.tile(np.arange(j), k))  # row k·J + j: candidate k, start j
        result = self.play_starts(np.repeat(candidates, j, axis=0), starts, batch_seed(seeds, k * j))
        return result.returns.reshape(k, j).mean(axis=1), result.steps

    def scores(self, params: np.ndarray, seeds: Sequence[int]) -> tuple[np.ndarray, int]:
        """Dream returns (len(seeds),) of one controller (P,)."""
        return self.play(np.repeat(params[None], len(seeds), axis=0), seeds)


# -- a real episode, driven like a dream, and the same actions in the dream ------------------------
def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@dataclass
class RealEpisode:
    frames: np.ndarray  # (T+1, 64, 64, 3) uint8
    actions: list  # T env actions
    rewards: np.ndarray  # (T,)
    observations: list  # T+1 of the env's own observations (CarRacing: 96×96×3), as a person sees the episode
    predicted: np.ndarray  # (T, Z): M's expected z_{t+1}, predicted at step t from z_t, a_t and its state


@torch.no_grad()
def record_real_episode(world: WorldModel, actor: Actor, seed: int, steps: int) -> RealEpisode:
    """One real episode (reset with ``seed``) of at most ``steps`` steps, the actor reading V's z (sampled, as C
    is trained) and M's state, as ``RealEvaluator`` runs C; V and M run where their parameters are."""
    source, vae, m = world.source, world.vae, world.mdnrnn
    device = _device(vae)
    env = source.make(steps)
    try:
        obs, _ = env.reset(seed=seed)
        noise = np.random.default_rng(seed)
        frames, actions, rewards, observations, predicted = [source.preprocess(obs)], [], [], [obs], []
        state = m.initial_state(1, device)
        for t in range(steps):
            mu, logvar = vae.encode(to_input(torch.tensor(frames[-1][None], device=device)))
            eps = torch.from_numpy(noise.standard_normal(mu.shape, dtype=np.float32)).to(device)
            z = sample_z(mu, logvar, eps)
            action = actor(t, z, m.controller_features(state))[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(source.preprocess(obs))
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            a = torch.from_numpy(source.encode_actions(source.stored_actions([action]))).to(device)
            out, state = m.step(z, a, state)
            predicted.append(mixture_mean(out)[0].cpu().numpy())
            if terminated or truncated:
                break
    finally:
        env.close()
    return RealEpisode(np.stack(frames), actions, np.asarray(rewards, dtype=np.float32), observations,
                       np.asarray(predicted, dtype=np.float32).reshape(len(actions), m.config.z_dim))


@dataclass
class Comparison:
    """One real episode and M's open-loop dream of the same actions from the same first frame, (T+1, ...) each:
    real and dream frames (64, 64, 3) uint8; error and floor: mean squared error per pixel (in [0, 1] units)
    against the real frame of the dream and of V's reconstruction of the real frame (z = mu)."""

    real: np.ndarray
    dream: np.ndarray
    error: np.ndarray
    floor: np.ndarray
    real_rewards: np.ndarray  # (T,)
    dream_rewards: np.ndarray  # (T,) M's reward head
    recon: np.ndarray  # (T+1, 64, 64, 3): V's reconstruction of each real frame (z = mu)
    predicted: np.ndarray  # (T, 64, 64, 3): M's one-step prediction of real frames 1…T, decoded by V


@torch.no_grad()
def real_vs_dream(world: WorldModel, actor: Actor, seed: int, steps: int, temperature: float) -> Comparison:
    """Play a real episode with ``actor``, then replay its actions open loop in M from the same first frame."""
    episode = record_real_episode(world, actor, seed, steps)
    vae, m = world.vae, world.mdnrnn
    device = _device(vae)
    real = torch.from_numpy(episode.frames).to(device)
    mu, logvar = (torch.cat(x) for x in zip(*(vae.encode(to_input(real[s: s + 256])) for s in range(0, len(real), 256))))
    generator = torch.Generator(device).manual_seed(seed)
    z0 = sample_z(mu[:1], logvar[:1], torch.randn(mu[:1].shape, generator=generator, device=device))
    result = dream(m, world.source, z0, m.initial_state(1, device), scripted_actor(episode.actions), len(episode.actions),
                   temperature, generator, record=True, until_done=False)
    dreamed, recon = decode(vae, result.z[:, 0]), decode(vae, mu)

    def mse(frames: np.ndarray) -> np.ndarray:
        diff = (frames.astype(np.float32) - episode.frames.astype(np.float32)) / 255.0
        return (diff ** 2).mean(axis=(1, 2, 3))

    predicted = decode(vae, torch.from_numpy(episode.predicted).to(device))
    return Comparison(episode.frames, dreamed, mse(dreamed), mse(recon), episode.rewards, result.rewards[:, 0], recon,
                      predicted)


@torch.no_grad()
def decode(vae: ConvVAE, z: torch.Tensor, batch: int = 256) -> np.ndarray:
    """z (..., Z) → frames (..., 64, 64, 3) uint8, decoded in batches on z's device."""
    flat = z.reshape(-1, z.shape[-1])
    frames = torch.cat([to_frames(vae.decode(flat[s: s + batch])) for s in range(0, len(flat), batch)]).numpy()
    return frames.reshape(*z.shape[:-1], *frames.shape[1:])
