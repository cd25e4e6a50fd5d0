"""Stage 01's loop: play exploration episodes and store them, across worker processes.

Episode ``i`` of a dataset is fully determined by (``--seed``, ``i``): its env seed and its policy's
random generator both come from ``episode_seed``. That makes a dataset the same whatever the number of
workers, lets a re-run fill in exactly the missing episodes, and lets any episode be replayed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

import envs
from data.store import Episode, RolloutStore, ShardInfo
from pipeline.compute import pool
from pipeline.contract.errors import UsageError
from pipeline.contract.seeding import episode_seed
from pipeline.controller_policy import ControllerPolicy
from pipeline.encoder_precision import FP32, Precision
from pipeline.reporting.progress import bar as progress_bar

ROUND_STRIDE = 1_000_000  # episode ids of round r ≥ 1 of iterative training: r·ROUND_STRIDE + i


def round_ids(round_: int, episodes: int) -> list[int]:
    """The episode ids a collection of ``episodes`` episodes holds: 0 … N−1 for the first collection (round 0), and
    a block of its own for each later round, so that rounds never share an id (nor, through it, a seed)."""
    return [round_ * ROUND_STRIDE + i for i in range(episodes)]


def play_episode(source: envs.EnvSource, env, episode_id: int, seed: int, policy_kind: str, policy=None,
                 round_: int = 0) -> Episode:
    """Play one episode from ``env.reset(seed=seed)``: with the exploration policy ``policy_kind`` seeded by
    ``seed``, or with ``policy`` (a ``ControllerPolicy``, which acts on each preprocessed frame)."""
    if policy is None:
        explorer = source.exploration_policy(policy_kind, np.random.default_rng(seed))
        explorer.reset()
        act = lambda frame: explorer.act()  # noqa: E731 (exploration ignores the frame)
    else:
        policy.reset(seed)
        act = policy.act
    obs, _ = env.reset(seed=seed)
    frames, actions, rewards, terms, truncs = [source.preprocess(obs)], [], [], [], []
    while True:
        action = act(frames[-1])
        obs, reward, terminated, truncated, _ = env.step(action)
        frames.append(source.preprocess(obs))
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated)
        if terminated or truncated:
            break
    return Episode(
        id=episode_id,
        observations=np.stack(frames),
        actions=source.stored_actions(actions),
        rewards=np.asarray(rewards, dtype=np.float32),
        terminations=np.asarray(terms, dtype=bool),
        truncations=np.asarray(truncs, dtype=bool),
        seed=seed,
        policy=policy_kind,
        round=round_,
    )


@dataclass
class CollectJob:
    """Everything one worker needs; plain values so it crosses a process boundary."""

    env: str
    state: str | None
    data: str
    seed: int
    policy: str
    max_steps: int
    shard_size: int
    round: int = 0  # iterative training's round (0: the first collection)
    controller: dict | None = None  # --policy controller: the run's vae.pt, mdnrnn.pt and controller.pt, as bytes
    noise: float = 0.0  # --policy controller: σ of the Gaussian noise on C's outputs
    v_precision: Precision = FP32  # --policy controller: V's encoder's precision (pipeline.encoder_precision)


def shard_info(job: CollectJob, source: envs.EnvSource) -> ShardInfo:
    return ShardInfo(
        env=job.env,
        spaces=source.space_json(),
        preprocessing=source.preprocessing,
        extra={"collect_seed": job.seed, "policy": job.policy, "max_steps": job.max_steps, "state": job.state or "",
               "round": job.round, "noise": job.noise},
    )


class Collector:
    """A worker of the pool (``pipeline.compute.pool``): one env, kept between episodes (retro allows one emulator per
    process), playing episode ids of ``job``; the stage's process alone writes the dataset."""

    def __init__(self, job: CollectJob):
        self.job, self.source = job, envs.get(job.env, job.state)
        self.env = self.source.make(job.max_steps)
        self.policy = None
        if job.controller is not None:
            self.policy = ControllerPolicy(job.controller, job.env, job.state, job.noise, job.v_precision)

    def play(self, episode_id: int) -> Episode:
        job = self.job
        return play_episode(self.source, self.env, episode_id, episode_seed(job.seed, episode_id), job.policy,
                            self.policy, job.round)


def check_compatible(store: RolloutStore, job: CollectJob) -> None:
    """Refuse to mix episodes collected with other settings into one dataset: every file's settings must agree
    (``RolloutStore.attrs``), and be this job's; and the episodes of this job's round must have its policy."""
    if not store.root.is_dir() or not store.files():
        return
    attrs = store.attrs()
    for name, flag, want in (("env_name", "--env", job.env), ("collect_seed", "--seed", job.seed),
                             ("max_steps", "--steps", job.max_steps), ("state", "--state", job.state or "")):
        have = attrs.get(name)
        have = have.item() if hasattr(have, "item") else have
        if have is not None and have != want:
            raise UsageError(
                f"{store.root} holds episodes collected with {flag} {have}, not {want}: "
                f"pass {flag} {have} to complete it, or --data NEWDIR for a new dataset"
            )
    other = {ref.policy for ref in store.index() if ref.round == job.round and ref.policy not in ("", job.policy)}
    if other:
        where = "its first collection" if job.round == 0 else f"round {job.round}"
        raise UsageError(f"{store.root} holds {where} played with --policy {sorted(other)[0]}, not {job.policy}: pass "
                         f"--policy {sorted(other)[0]} to complete it, or --data NEWDIR for a new dataset")


def collect(job: CollectJob, episodes: int, workers: int, progress: bool = True, backend: str = "local",
            address: str | None = None, task_timeout: float = 600.0) -> tuple[int, int]:
    """Bring the dataset in ``job.data`` up to ``episodes`` episodes, played by a worker pool of ``backend``
    (local processes or Ray actors) and written here: each episode staged as it arrives, packed every
    ``job.shard_size``. Returns (already there, added)."""
    source = envs.get(job.env, job.state)
    store = RolloutStore(job.data)
    source.make(job.max_steps).close()  # a missing package or ROM fails here, before any worker starts
    info = shard_info(job, source)
    # Checked before the tidying: leftovers of another collection must not be packed under this one's settings.
    check_compatible(store, job)
    if store.root.is_dir() and store.files() and "spaces" in store.attrs():
        # A folder begun by an older version records the env's observation space: its new shards say the same,
        # so that the folder stays one collection.
        info.spaces = json.loads(store.attrs()["spaces"])
    store.recover(info)
    have = {ref.id for ref in store.index()}
    missing = [i for i in round_ids(job.round, episodes) if i not in have]
    present = episodes - len(missing)
    if not missing:
        return present, 0
    # Made before the bar shows, so that a missing Ray or a bad --address fails first.
    workers = pool.make(backend, Collector, (job,), workers, task_timeout, "collection", address, calls=len(missing))
    hide = {} if progress else {"disable": True}  # otherwise TQDM_DISABLE decides
    bar = progress_bar(total=episodes, initial=present, desc="collect", unit="ep", **hide)
    staged = []

    def keep(_, episode: Episode) -> None:
        staged.append(store.stage(episode, info))
        bar.update()
        if len(staged) == job.shard_size:
            store.pack(staged, info)
            staged.clear()

    with workers:
        workers.run([("play", (i,)) for i in missing], on_result=keep)
    store.pack(staged, info)
    bar.close()
    return present, len(missing)
