"""Stage 01's loop: play exploration episodes and store them, across worker processes.

Episode ``i`` of a dataset is fully determined by (``--seed``, ``i``): its env seed and its policy's
random generator both come from ``episode_seed``. That makes a dataset the same whatever the number of
workers, lets a re-run fill in exactly the missing episodes, and lets any episode be replayed.
"""
from __future__ import annotations

import multiprocessing as mp
import queue as queue_mod
import sys
import traceback
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

import envs
from data.atomic import DiskFull
from data.store import Episode, RolloutStore, ShardInfo
from pipeline.cli import UsageError, WorkerError


def episode_seed(base_seed: int, episode_id: int) -> int:
    """A 31-bit seed for episode ``episode_id`` of the dataset collected with ``base_seed``."""
    return int(np.random.SeedSequence([base_seed, episode_id]).generate_state(1)[0] >> 1)


def play_episode(source: envs.EnvSource, env, episode_id: int, seed: int, policy_kind: str) -> Episode:
    """Play one exploration episode from ``env.reset(seed=seed)`` with the policy seeded by ``seed``."""
    policy = source.exploration_policy(policy_kind, np.random.default_rng(seed))
    policy.reset()
    obs, _ = env.reset(seed=seed)
    frames, actions, rewards, terms, truncs = [source.preprocess(obs)], [], [], [], []
    while True:
        action = policy.act()
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
    episode_ids: list[int]


def shard_info(job: CollectJob, source: envs.EnvSource, env) -> ShardInfo:
    return ShardInfo(
        env=job.env,
        spaces=source.space_json(env),
        preprocessing=source.preprocessing,
        extra={"collect_seed": job.seed, "policy": job.policy, "max_steps": job.max_steps, "state": job.state or ""},
    )


def run_job(job: CollectJob, report=lambda episode_id: None) -> None:
    """Play and store ``job.episode_ids``; pack every ``shard_size`` episodes. The only writer of its files."""
    source = envs.get(job.env, job.state)
    env = source.make(job.max_steps)
    store = RolloutStore(job.data)
    info = shard_info(job, source, env)
    staged = []
    for episode_id in job.episode_ids:
        seed = episode_seed(job.seed, episode_id)
        staged.append(store.stage(play_episode(source, env, episode_id, seed, job.policy), info))
        report(episode_id)
        if len(staged) == job.shard_size:
            store.pack(staged, info)
            staged = []
    store.pack(staged, info)
    env.close()


def _worker(job: CollectJob, index: int, messages) -> None:
    try:
        run_job(job, report=lambda i: messages.put(("episode", index, i)))
        messages.put(("done", index, None))
    except DiskFull as e:
        messages.put(("disk full", index, e))
    except BaseException:
        messages.put(("error", index, traceback.format_exc()))


def check_compatible(store: RolloutStore, job: CollectJob) -> None:
    """Refuse to mix episodes collected with other settings into one dataset."""
    if not store.files():
        return
    attrs = store.attrs()
    for name, flag, want in (("env_name", "--env", job.env), ("collect_seed", "--seed", job.seed),
                             ("policy", "--policy", job.policy), ("max_steps", "--steps", job.max_steps),
                             ("state", "--state", job.state or "")):
        have = attrs.get(name)
        have = have.item() if hasattr(have, "item") else have
        if have is not None and have != want:
            raise UsageError(
                f"{store.root} holds episodes collected with {flag} {have}, not {want}: "
                f"pass {flag} {have} to complete it, or --data NEWDIR for a new dataset"
            )


def collect(job: CollectJob, episodes: int, workers: int, progress: bool = True, backend: str = "local",
            address: str | None = None) -> tuple[int, int]:
    """Bring the dataset in ``job.data`` up to ``episodes`` episodes, in local processes or on Ray actors
    (``backend``). Returns (already there, added)."""
    source = envs.get(job.env, job.state)
    store = RolloutStore(job.data)
    probe = source.make(job.max_steps)
    info = shard_info(job, source, probe)
    probe.close()
    store.recover(info)
    check_compatible(store, job)
    have = {ref.id for ref in store.index()}
    missing = [i for i in range(episodes) if i not in have]
    present = episodes - len(missing)
    if not missing:
        return present, 0
    workers = min(workers, len(missing))
    if backend == "ray":
        from pipeline import ray_backend
        ray = ray_backend.start(address, workers)  # a bad --address or a missing Ray fails before the bar shows
    hide = {} if progress else {"disable": True}  # otherwise TQDM_DISABLE decides
    bar = tqdm(total=episodes, initial=present, desc="collect", unit="ep", **hide)
    if backend == "ray":
        try:
            ray_backend.collect(ray, job, missing, workers, store, info, bar)
        finally:
            ray_backend.stop()
    elif workers == 1:
        run_job(CollectJob(**{**vars(job), "episode_ids": missing}), report=lambda i: bar.update())
    elif _run_workers(job, missing, workers, bar):
        store.recover(info)  # pack what replaced workers had staged but not packed
    bar.close()
    return present, len(missing)


def _run_workers(job: CollectJob, missing: list[int], workers: int, bar: tqdm, retries: int = 3) -> int:
    """Play ``missing`` across ``workers`` processes. A worker that dies is replaced by a new one for the
    episodes it had not finished (at most ``retries`` times in all); returns how many were replaced."""
    ctx = mp.get_context("spawn")
    messages = ctx.Queue()
    todo = {w: missing[w::workers] for w in range(workers)}  # episodes each worker has not reported yet
    procs = {}

    def start(w: int) -> None:
        procs[w] = ctx.Process(target=_worker, args=(CollectJob(**{**vars(job), "episode_ids": todo[w]}), w, messages))
        procs[w].start()

    for w in todo:
        start(w)
    running, replaced = set(todo), 0
    try:
        while running:
            try:
                kind, w, payload = messages.get(timeout=1.0)
            except queue_mod.Empty:
                for w in sorted(running):
                    if procs[w].exitcode in (None, 0):  # alive, or its "done" is still on its way
                        continue
                    if replaced == retries:
                        raise WorkerError(f"collection workers died {retries + 1} times (last exit code "
                                          f"{procs[w].exitcode}); check free memory, then re-run the same command "
                                          "to complete the dataset") from None
                    replaced += 1
                    print(f"warning: a collection worker died (exit code {procs[w].exitcode}); a new one plays its "
                          f"{len(todo[w])} unfinished episodes", file=sys.stderr, flush=True)
                    procs[w].join()
                    start(w)
                continue
            if kind == "episode":
                todo[w].remove(payload)
                bar.update()
            elif kind == "done":
                running.discard(w)
            elif kind == "disk full":
                raise payload
            else:
                raise WorkerError(f"a collection worker failed ({payload.strip().splitlines()[-1]}); "
                                  "re-run the same command to complete the dataset")
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()
            p.join()
    return replaced
